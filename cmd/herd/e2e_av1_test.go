package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/protocol"
	"github.com/herdhq/herd/internal/testenv"
)

// av1Clip is the AV1 player test's clip length: two 4 s segments.
const av1Clip = 6

// refuseAV1 makes the page refuse every av01 type, as a browser without an
// AV1 decoder does: MediaSource.isTypeSupported, and
// MediaCapabilities.decodingInfo, which is what Shaka asks in Chromium
// (with isTypeSupported alone patched, it still picks AV1: tried).
const refuseAV1 = `(() => {
	const is = MediaSource.isTypeSupported.bind(MediaSource);
	MediaSource.isTypeSupported = t => !/av01/i.test(t) && is(t);
	if (navigator.mediaCapabilities) {
		const di = navigator.mediaCapabilities.decodingInfo.bind(navigator.mediaCapabilities);
		navigator.mediaCapabilities.decodingInfo = async c => {
			const ct = (c.video && c.video.contentType) || "";
			if (/av01/i.test(ct)) return {supported: false, smooth: false, powerEfficient: false, configuration: c};
			return di(c);
		};
	}
})();
`

// TestPlayersAV1: a web-cmaf-av1 job (SVT-AV1 beside H.264 in one master
// playlist and one manifest) plays to the end in Shaka (from the HLS master
// and the DASH manifest), hls.js and dash.js, each of which keeps only the
// AV1 ladder where the browser decodes AV1, and only the H.264 one when the
// page refuses av01.
func TestPlayersAV1(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "AV1.mp4")
	require.NoError(t, testenv.Clip{Size: "640x360", Rate: 25, Seconds: av1Clip, Tone: 330, Stereo: true}.Make(src))
	site := otherSite(t)
	s := startServer(t, filepath.Join(dir, "data"), "--cors-origin", site.URL)
	stdout, stderr, code := s.herd("submit", src, "--profile", "web-cmaf-av1", "--wait")
	require.Equal(t, 0, code, stderr)
	id := strings.TrimSpace(stdout)
	j := s.job(id)
	require.Equal(t, "succeeded", j.State)
	codecs := map[string]string{}
	for _, o := range j.Outputs {
		if o.Kind == "hls" && o.Codec != "" && o.Codec != "aac" {
			codecs[o.Name] = o.Codec
		}
	}
	require.Equal(t, map[string]string{"360p": "h264", "240p": "h264", "360p-av1": "av1", "240p-av1": "av1"}, codecs)
	stdout, stderr, code = s.herd("share", id, "--ttl", "1h", "-o", "json")
	require.Equal(t, 0, code, stderr)
	var l protocol.Link
	require.NoError(t, json.Unmarshal([]byte(stdout), &l), stdout)

	require.True(t, evalJS[bool](t, ctx, `MediaSource.isTypeSupported('video/mp4; codecs="av01.0.04M.08"')`), "this Chromium decodes AV1")
	// What each player kept after asking the browser, and what it plays
	// now, as the sample entry types of the video codecs.
	const (
		shakaKept    = `[...new Set(herdTest.player.getVariantTracks().map(t => t.videoCodec.split(".")[0]))]`
		shakaPlaying = `herdTest.player.getVariantTracks().find(t => t.active).videoCodec.split(".")[0]`
		hlsKept      = `[...new Set(herdTest.player.levels.map(l => (l.videoCodec || "").split(".")[0]))]`
		hlsPlaying   = `herdTest.player.levels[herdTest.player.currentLevel].videoCodec.split(".")[0]`
		dashKept     = `[...new Set(herdTest.player.getTracksFor("video").map(t => (t.codec.match(/codecs="?([a-z0-9]+)/i) || [])[1]))]`
		dashPlaying  = `(herdTest.player.getCurrentTrackFor("video").codec.match(/codecs="?([a-z0-9]+)/i) || [])[1]`
	)
	shaka := "testdata/players/shaka-player.compiled.js"
	for _, tc := range []struct {
		name, lib, start, manifest, patch, kept, playing, want string
	}{
		{"ShakaHLS", shaka, shakaStart, "master.m3u8", "", shakaKept, shakaPlaying, "av01"},
		{"ShakaHLSWithoutAV1", shaka, shakaStart, "master.m3u8", refuseAV1, shakaKept, shakaPlaying, "avc1"},
		{"ShakaDASH", shaka, shakaStart, "manifest.mpd", "", shakaKept, shakaPlaying, "av01"},
		{"ShakaDASHWithoutAV1", shaka, shakaStart, "manifest.mpd", refuseAV1, shakaKept, shakaPlaying, "avc1"},
		{"HLSjs", players[0].lib, players[0].start, "master.m3u8", "", hlsKept, hlsPlaying, "av01"},
		{"DashJS", players[3].lib, players[3].start, "manifest.mpd", "", dashKept, dashPlaying, "av01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The patch runs before the player installs its polyfills and
			// asks the browser what it decodes.
			start := "(async () => { " + tc.patch + "; await " + tc.start + "; })()"
			openPlayer(t, ctx, site, tc.lib, start, l.URL+tc.manifest)
			// Let the player read the manifest and choose.
			untilPlaying(t, ctx, tc.name, "the duration", `herdTest.v.duration > 0 && isFinite(herdTest.v.duration)`, 20*time.Second)
			kept := evalJS[[]string](t, ctx, tc.kept)
			if tc.patch != "" {
				require.Equal(t, []string{"avc1"}, kept, "%s kept AV1 the page refuses", tc.name)
			} else {
				require.Contains(t, kept, "av01", "%s dropped AV1", tc.name)
			}
			playToEnd(t, ctx, tc.name)
			require.Equal(t, tc.want, evalJS[string](t, ctx, tc.playing), "%s played", tc.name)
			t.Logf("%s kept %v and played %s", tc.name, kept, tc.want)
		})
	}
	t.Run("EmbedMenu", func(t *testing.T) { av1Menus(t, ctx, l) })
}

// av1Menus: the link's own player page (the embed) names each rung's codec
// in its quality menu, so that the two 360p rungs can be told apart.
func av1Menus(t *testing.T, ctx context.Context, l protocol.Link) {
	t.Helper()
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(l.URL)))
	testenv.WaitJS(t, ctx, "the quality menu", `document.getElementById("quality") && document.getElementById("quality").options.length > 2`, 20*time.Second)
	opts := evalJS[[]string](t, ctx, `[...document.getElementById("quality").options].map(o => o.textContent)`)
	require.Equal(t, "Auto", opts[0])
	require.ElementsMatch(t, []string{"360p H.264", "360p AV1", "240p H.264", "240p AV1"}, opts[1:])
}

// playToEnd plays the AV1 clip from the start to its end at twice its speed.
func playToEnd(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	untilPlaying(t, ctx, name, "the duration", `herdTest.v.duration > 0 && isFinite(herdTest.v.duration)`, 20*time.Second)
	dur := evalJS[float64](t, ctx, `herdTest.v.duration`)
	require.InDelta(t, av1Clip, dur, 0.5, "%s: the duration", name)
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`herdTest.v.playbackRate = 2; herdTest.v.play().catch(e => herdTest.st.errors.push("play(): " + e.message))`, nil)))
	untilPlaying(t, ctx, name, "the end", fmt.Sprintf(`herdTest.st.ended || herdTest.v.currentTime >= %f`, dur-0.08), 30*time.Second)
	require.Empty(t, evalJS[[]string](t, ctx, `herdTest.st.errors`), "%s: player errors", name)
}

// TestAV1WithoutLibsvtav1: a server whose ffmpeg lacks libsvtav1 (the real
// one behind a wrapper that refuses that encoder) proves the rest, and a
// web-cmaf-av1 job on it waits with a note that says why, on the job and in
// herd workers, where a web-hls job runs.
func TestAV1WithoutLibsvtav1(t *testing.T) {
	t.Parallel()
	real, err := exec.LookPath("ffmpeg")
	require.NoError(t, err)
	dir := t.TempDir()
	wrapper := filepath.Join(dir, "ffmpeg")
	script := "#!/bin/sh\nfor a in \"$@\"; do\n  if [ \"$a\" = libsvtav1 ]; then echo \"Unknown encoder 'libsvtav1'\" >&2; exit 1; fi\ndone\nexec " + real + " \"$@\"\n"
	require.NoError(t, os.WriteFile(wrapper, []byte(script), 0o755))
	src := filepath.Join(dir, "Clip.mp4")
	require.NoError(t, testenv.Clip{Size: "320x180", Rate: 25, Seconds: 2, Tone: 330}.Make(src))
	s := startServer(t, filepath.Join(dir, "data"), "--ffmpeg", wrapper)

	stdout, stderr, code := s.herd("submit", src, "--profile", "web-cmaf-av1")
	require.Equal(t, 0, code, stderr)
	av1 := strings.TrimSpace(stdout)
	stdout, stderr, code = s.herd("submit", src, "--profile", "web-hls", "--wait")
	require.Equal(t, 0, code, "a web-hls job runs: %s", stderr)
	require.Equal(t, "succeeded", s.job(strings.TrimSpace(stdout)).State)

	// Its encode waits (behind the probe, or queued): the job says why.
	stdout, stderr, code = s.herd("job", av1)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "Waiting:")
	require.Contains(t, stdout, "av1 (the libsvtav1 encoder)")
	stdout, stderr, code = s.herd("workers")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, fmt.Sprintf("No worker has capability av1 (the libsvtav1 encoder), which 1 waiting job(s) need: %s.\nTo run them, start a worker whose ffmpeg has it", av1))
	require.Contains(t, s.logs.String(), `"capabilities":["h264","hevc"]`, "the in-process workers proved the rest")
	require.Contains(t, s.logs.String(), `"workers":"in-process"`)
}
