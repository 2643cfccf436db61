package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/protocol"
	"github.com/herdhq/herd/internal/testenv"
)

// The built-in web profile's output plays to the end, with a seek, through
// a playback link with no key, from a page of another site, in the
// three players people use it with: hls.js (the one the web UI embeds),
// Shaka Player and dash.js (vendored for tests only under
// testdata/players by make web-vendor). To stay within CI's budget they
// share one short clip, one herd job and one browser. The job is split
// into three chunks and stitched, and each player crosses both chunk
// boundaries: one while it plays on, the other right after a seek.

// playerHarness makes a muted <video> in the page and window.herdTest,
// which records what the test checks: player errors, the end, and when
// the playhead last moved (a stall is a playhead that stops while playing).
const playerHarness = `(() => {
	document.querySelectorAll("video.herd-test").forEach(v => v.remove());
	const v = document.createElement("video");
	v.className = "herd-test";
	v.muted = true;
	v.width = 640;
	document.body.prepend(v);
	const st = {errors: [], log: [], ended: false, moved: performance.now(), last: -1};
	v.addEventListener("error", () => st.errors.push("video element: " + (v.error ? v.error.code + " " + v.error.message : "?")));
	v.addEventListener("ended", () => { st.ended = true; });
	const moved = () => { if (v.currentTime !== st.last) { st.last = v.currentTime; st.moved = performance.now(); } };
	v.addEventListener("timeupdate", moved);
	v.addEventListener("seeking", () => { st.moved = performance.now(); });
	window.herdTest = {v, st, player: null};
})()`

// A player starts with window.herdTest set up and the manifest's URL in
// url; it sets herdTest.player and pushes its error events to st.errors.
var players = []struct {
	name, lib, manifest, start string
}{
	{"HLSjs", "../../internal/web/assets/vendor/hls.min.js", "master.m3u8", `(async () => {
		const {v, st} = herdTest;
		const h = new Hls();
		h.on(Hls.Events.ERROR, (_, d) => (d.fatal ? st.errors : st.log).push("hls.js " + d.type + ": " + d.details + (d.error ? " " + d.error.message : "")));
		h.loadSource(url);
		h.attachMedia(v);
		herdTest.player = h;
	})()`},
	{"ShakaHLS", "testdata/players/shaka-player.compiled.js", "master.m3u8", shakaStart},
	{"ShakaDASH", "testdata/players/shaka-player.compiled.js", "manifest.mpd", shakaStart},
	{"DashJS", "testdata/players/dash.all.min.js", "manifest.mpd", `(async () => {
		const {v, st} = herdTest;
		const p = dashjs.MediaPlayer().create();
		const ev = dashjs.MediaPlayer.events;
		p.on(ev.ERROR, e => st.errors.push("dash.js error: " + JSON.stringify(e.error)));
		p.on(ev.PLAYBACK_ERROR, e => st.errors.push("dash.js playback error: " + JSON.stringify(e.error)));
		p.initialize(v, url, false);
		herdTest.player = p;
	})()`},
}

const shakaStart = `(async () => {
	const {v, st} = herdTest;
	shaka.polyfill.installAll();
	const p = new shaka.Player();
	p.addEventListener("error", e => st.errors.push("shaka " + e.detail.code + " (category " + e.detail.category + ", severity " + e.detail.severity + "): " + JSON.stringify(e.detail.data).slice(0, 300)));
	herdTest.player = p;
	await p.attach(v);
	await p.load(url);
})()`

func TestPlayers(t *testing.T) {
	t.Parallel()
	ctx, s, site, l := playersSetup(t)

	for _, p := range players {
		t.Run(p.name, func(t *testing.T) {
			openPlayer(t, ctx, site, p.lib, p.start, l.URL+p.manifest)
			playWithSeek(t, ctx, p.name)
		})
	}
	for _, p := range players[:3] {
		t.Run(p.name+"AudioLanguages", func(t *testing.T) {
			openPlayer(t, ctx, site, p.lib, p.start, l.URL+p.manifest)
			switchAudio(t, ctx, p.name)
		})
	}
	for _, p := range players[:3] {
		t.Run(p.name+"Subtitles", func(t *testing.T) {
			openPlayer(t, ctx, site, p.lib, p.start, l.URL+p.manifest)
			showSubtitles(t, ctx, p.name)
		})
	}
	t.Run("ShakaTrickPlay", func(t *testing.T) {
		shakaTrickPlay(t, ctx, site, l.URL)
	})
	t.Run("EmbedPage", func(t *testing.T) {
		embedPage(t, ctx, s, site, l)
	})
	// Last: it ends the link.
	t.Run("Refused", func(t *testing.T) {
		linkRefused(t, s, site, l)
	})
}

// playersSetup runs one short clip through web-hls on a server whose
// playback links other sites may read (--cors-origin), shares the job, and
// opens a page of that other site in a browser that never signed in. It
// returns the browser, the server, the site and the link (its outputs are
// below link.URL): the players play through the link with no key, across
// origins, as a player on a customer's site would.
func playersSetup(t *testing.T) (context.Context, *server, *httptest.Server, protocol.Link) {
	t.Helper()
	ctx := browser(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "Players.mp4")
	// 13 s of 4 s segments in 4 s chunks: chunks start at 0, 4 and 8 s.
	// Two audio languages, English (the default) and French, and English
	// subtitles whose cues cross both chunk boundaries.
	srt := filepath.Join(dir, "en.srt")
	require.NoError(t, os.WriteFile(srt, []byte(playersSRT), 0o644))
	require.NoError(t, testenv.Clip{Size: "640x360", Rate: 25, Seconds: playersClip, Tone: 330, Stereo: true, Languages: []string{"eng", "fre"},
		Subtitles: []testenv.Subtitle{{Path: srt, Language: "eng"}}}.Make(src))
	site := otherSite(t)
	s := startServer(t, filepath.Join(dir, "data"), "--cors-origin", site.URL)
	// French subtitles come as a file of their own, which the split job's
	// audio task writes.
	frSRT := filepath.Join(dir, "fr.srt")
	require.NoError(t, os.WriteFile(frSRT, []byte("1\n00:00:02,000 --> 00:00:05,000\n"+playersFrenchCue+"\n"), 0o644))
	stdout, stderr, code := s.herd("submit", src, "--profile", "web-hls", "--chunk-seconds", "4", "--subtitle", "fr="+frSRT, "--wait")
	require.Equal(t, 0, code, stderr)
	id := strings.TrimSpace(stdout)
	j := s.job(id)
	require.Equal(t, "succeeded", j.State)
	require.Equal(t, 3, strings.Count(strings.Join(kinds(j), ","), "chunk "), "three chunks: %v", kinds(j))
	// Both languages were brought to -16 LUFS by the audio task of this
	// split job, as verification measured them, and herd job says so.
	loud := 0
	for _, o := range j.Outputs {
		if o.Loudness != nil {
			loud++
			require.InDelta(t, -16, o.Loudness.Integrated, 1, "%s: integrated loudness", o.Name)
			require.LessOrEqual(t, o.Loudness.TruePeak, -0.5, "%s: true peak", o.Name)
		}
	}
	require.Equal(t, 2, loud, "both audio renditions measured")
	stdout, stderr, code = s.herd("job", id)
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, `(?m)^English\s+en\s+2\s+-[0-9.]+ LUFS, -[0-9.]+ dBTP\s+\+[0-9.]+ dB\s+-1[5-7]\.[0-9] LUFS`, stdout, "herd job's AUDIO section")

	stdout, stderr, code = s.herd("share", id, "--ttl", "1h", "-o", "json")
	require.Equal(t, 0, code, stderr)
	var l protocol.Link
	require.NoError(t, json.Unmarshal([]byte(stdout), &l), stdout)
	require.Equal(t, l.URL+"master.m3u8", l.Playlist)
	require.Equal(t, l.URL+"manifest.mpd", l.Manifest)
	return ctx, s, site, l
}

// otherSite serves a blank page (and, at /frame?src=URL, a page that puts
// URL in an iframe) from http://localhost:PORT: another origin than the
// herd server's http://127.0.0.1:PORT, with no policy of its own.
func otherSite(t *testing.T) *httptest.Server {
	t.Helper()
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		body := ""
		if src := r.URL.Query().Get("src"); src != "" {
			body = `<iframe id="embed" title="video" width="640" height="400" src="` + html.EscapeString(src) + `" allow="autoplay"></iframe>`
		}
		fmt.Fprintf(w, "<!doctype html><html lang=en><head><title>site</title></head><body>%s</body></html>", body)
	}))
	t.Cleanup(site.Close)
	site.URL = strings.Replace(site.URL, "127.0.0.1", "localhost", 1)
	return site
}

// openPlayer loads a fresh page of the other site, the player library in
// lib and the harness, and runs start with url set.
func openPlayer(t *testing.T, ctx context.Context, site *httptest.Server, lib, start, url string) {
	t.Helper()
	src, err := os.ReadFile(lib)
	require.NoError(t, err)
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(site.URL+"/")))
	testenv.WaitJS(t, ctx, "the page", `document.readyState === "complete"`, 10*time.Second)
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(string(src), nil), chromedp.Evaluate(playerHarness, nil)))
	var done bool
	err = chromedp.Run(ctx, chromedp.Evaluate(fmt.Sprintf("(async () => { const url = %q; await %s; return true; })()", url, start), &done,
		func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }))
	require.NoError(t, err, "start the player on %s: %s", url, playerErrors(ctx))
}

// playWithSeek plays from the start, seeks to 60 % and plays to the end.
// playersClip is the players' clip's length; its chunks start at 0, 4 and 8 s.
const playersClip = 13

func playWithSeek(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	untilPlaying(t, ctx, name, "the duration", `herdTest.v.duration > 0 && isFinite(herdTest.v.duration)`, 20*time.Second)
	dur := evalJS[float64](t, ctx, `herdTest.v.duration`)
	require.InDelta(t, playersClip, dur, 0.5, "%s: the duration", name)
	// Twice as fast: the same crossings in half the time.
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`herdTest.v.playbackRate = 2; herdTest.v.play().catch(e => herdTest.st.errors.push("play(): " + e.message))`, nil)))
	untilPlaying(t, ctx, name, "playback across the first chunk boundary", `herdTest.v.currentTime > 4.5`, 20*time.Second)

	// Just before the second boundary, then across it.
	const to = 7.6
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(fmt.Sprintf(`herdTest.v.currentTime = %f`, to), nil)))
	untilPlaying(t, ctx, name, "playback after the seek, across the second chunk boundary", `!herdTest.v.seeking && herdTest.v.currentTime > 8.5`, 20*time.Second)
	// The end: the ended event, or a playhead within two frames of it.
	untilPlaying(t, ctx, name, "the end", fmt.Sprintf(`herdTest.st.ended || herdTest.v.currentTime >= %f`, dur-0.08), 30*time.Second)
	require.Empty(t, evalJS[[]string](t, ctx, `herdTest.st.errors`), "%s: player errors", name)
	t.Logf("%s played to %.2f of %.2f s; notes: %v", name, evalJS[float64](t, ctx, `herdTest.v.currentTime`), dur, evalJS[[]string](t, ctx, `herdTest.st.log`))
}

// audioTracks lists the player's audio choices as "lang name", and which
// is playing, through hls.js's or Shaka's own API.
const audioTracks = `(() => {
	const p = herdTest.player;
	if (typeof Hls !== "undefined" && p instanceof Hls) {
		return {tracks: p.audioTracks.map(t => t.lang + " " + t.name), active: p.audioTracks[p.audioTrack] ? p.audioTracks[p.audioTrack].lang : ""};
	}
	const ts = p.getAudioTracks(), a = ts.find(t => t.active);
	return {tracks: ts.map(t => t.language + " " + t.label).sort(), active: a ? a.language : ""};
})()`

// switchAudio: the player offers both languages under their names, starts
// with the default (English), and plays on in French once asked, reading
// the French rendition's segments.
func switchAudio(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	untilPlaying(t, ctx, name, "the audio tracks", `(`+audioTracks+`).tracks.length === 2`, 20*time.Second)
	var got struct {
		Tracks []string
		Active string
	}
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(audioTracks, &got)))
	require.Equal(t, []string{"en English", "fr Français"}, got.Tracks, "%s: the audio tracks", name)
	require.Equal(t, "en", got.Active, "%s: the default track", name)
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`herdTest.v.play().catch(e => herdTest.st.errors.push("play(): " + e.message))`, nil)))
	untilPlaying(t, ctx, name, "playback in English", `herdTest.v.currentTime > 1`, 20*time.Second)
	// Count the French rendition's segments fetched from now on.
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`(() => {
		const p = herdTest.player;
		herdTest.french = 0;
		if (p instanceof (window.Hls || function () {})) {
			p.on(Hls.Events.FRAG_LOADED, (_, d) => { if (d.frag.type === "audio" && p.audioTracks[d.frag.level] && p.audioTracks[d.frag.level].lang === "fr") herdTest.french++; });
			p.audioTrack = p.audioTracks.findIndex(t => t.lang === "fr");
		} else {
			p.getNetworkingEngine().registerResponseFilter((type, resp, c) => {
				if (type === shaka.net.NetworkingEngine.RequestType.SEGMENT && c && c.stream && c.stream.type === "audio" && c.stream.language === "fr") herdTest.french++;
			});
			p.selectAudioTrack(p.getAudioTracks().find(t => t.language === "fr"));
		}
	})()`, nil)))
	at := evalJS[float64](t, ctx, `herdTest.v.currentTime`)
	untilPlaying(t, ctx, name, "French segments", `herdTest.french > 0 && (`+audioTracks+`).active === "fr"`, 20*time.Second)
	untilPlaying(t, ctx, name, "playback on in French", fmt.Sprintf(`herdTest.v.currentTime > %f`, at+1.5), 20*time.Second)
	require.Empty(t, evalJS[[]string](t, ctx, `herdTest.st.errors`), "%s: player errors", name)
}

// playersSRT is the players' clip's subtitles: cues in the first chunk,
// across the boundaries at 4 and 8 s, and near the end.
const playersSRT = `1
00:00:01,000 --> 00:00:02,500
One.

2
00:00:03,500 --> 00:00:04,500
Across the first boundary.

3
00:00:07,900 --> 00:00:09,200
Across the second.

4
00:00:11,000 --> 00:00:12,400
The last.
`

// playersFrenchCue is the one cue of the French subtitle file given with
// the players' clip, from 2 to 5 s.
const playersFrenchCue = "À cheval sur la première limite."

// playersCues are playersSRT's cues: text, start and end.
var playersCues = map[string][2]float64{"One.": {1, 2.5}, "Across the first boundary.": {3.5, 4.5}, "Across the second.": {7.9, 9.2}, "The last.": {11, 12.4}}

// showSubtitles turns the English subtitles on through the player's own
// API, plays to the end at twice the speed, and holds every cue the
// player put on the video to the source's times, within a frame.
func showSubtitles(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	// English from the source's stream, French from the file given with it.
	untilPlaying(t, ctx, name, "the subtitle tracks", `(herdTest.player instanceof (window.Hls || function () {}) ? herdTest.player.subtitleTracks.map(t => t.lang) : herdTest.player.getTextTracks().map(t => t.language)).sort().join() === "en,fr"`, 20*time.Second)
	// Every cue any text track of the video holds, recorded as playback
	// goes (a player may drop cues it has passed).
	awaitJS[bool](t, ctx, `(async () => {
		const p = herdTest.player, v = herdTest.v;
		herdTest.cues = {};
		herdTest.cueTimer = setInterval(() => {
			for (const tt of Array.from(v.textTracks).filter(t => t.mode !== "disabled")) {
				for (const c of Array.from(tt.cues || [])) herdTest.cues[c.text] = {text: c.text, start: c.startTime, end: c.endTime};
			}
		}, 50);
		if (p instanceof (window.Hls || function () {})) {
			p.on(Hls.Events.CUES_PARSED, (_, d) => herdTest.st.log.push("cues " + d.cues.length + " " + d.cues.map(c => c.startTime + "-" + c.endTime).join(",")));
			p.subtitleDisplay = true;
			p.subtitleTrack = p.subtitleTracks.findIndex(t => t.lang === "en");
		} else {
			p.selectTextTrack(p.getTextTracks().find(t => t.language === "en"));
		}
		v.playbackRate = 2;
		v.play().catch(e => herdTest.st.errors.push("play(): " + e.message));
		return true;
	})()`)
	defer func() {
		if t.Failed() {
			t.Logf("%s text tracks: %v", name, evalJS[[]string](t, ctx, `Array.from(herdTest.v.textTracks).map(t => t.kind + " " + t.label + " " + t.language + " " + t.mode + " " +
				(t.cues ? Array.from(t.cues).map(c => c.startTime + "-" + c.endTime + ":" + c.text).join("|") : "none"))`))
		}
	}()
	untilPlaying(t, ctx, name, "every cue", fmt.Sprintf(`Object.keys(herdTest.cues).length >= %d`, len(playersCues)), 30*time.Second)
	var cues []struct {
		Text       string
		Start, End float64
	}
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`(() => { clearInterval(herdTest.cueTimer); return Object.values(herdTest.cues); })()`, &cues)))
	seen := map[string]bool{}
	for _, c := range cues {
		text := strings.TrimSpace(c.Text)
		want, ok := playersCues[text]
		if text == playersFrenchCue { // a player may load a track it does not show
			want, ok = [2]float64{2, 5}, true
		}
		require.True(t, ok, "%s: a cue the source does not have: %+v", name, c)
		require.InDelta(t, want[0], c.Start, 0.04, "%s: %q starts", name, c.Text)
		require.InDelta(t, want[1], c.End, 0.04, "%s: %q ends", name, c.Text)
		if text != playersFrenchCue {
			seen[text] = true
		}
	}
	require.Len(t, seen, len(playersCues), "%s: every cue shown: %+v", name, cues)
	require.Empty(t, evalJS[[]string](t, ctx, `herdTest.st.errors`), "%s: player errors", name)
}

// untilPlaying waits for cond, failing at once on a player error, or when
// the playhead has not moved for 5 s while the video should be playing.
// playerStall is how long (seconds) a playing player may show no progress
// before untilPlaying gives up on it early: long enough for a loaded
// 2-core machine running the whole suite (make test ran a player into a
// 5 s stall there, which alone it never shows), short of every deadline.
const playerStall = 12

func untilPlaying(t *testing.T, ctx context.Context, name, what, cond string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var st struct {
			OK      bool
			Errors  []string
			Stalled float64
			Time    float64
			Ready   int
		}
		err := chromedp.Run(ctx, chromedp.Evaluate(`(() => { const {v, st} = herdTest; return {
			ok: !!(`+cond+`), errors: st.errors, time: v.currentTime, ready: v.readyState,
			stalled: (!v.paused && !v.ended && !st.ended) ? (performance.now() - st.moved) / 1000 : 0}; })()`, &st))
		require.NoError(t, err, "%s: evaluate %s", name, cond)
		switch {
		case len(st.Errors) > 0:
			t.Fatalf("%s failed waiting for %s: %s", name, what, strings.Join(st.Errors, "; "))
		case st.OK:
			return
		case st.Stalled > playerStall:
			t.Fatalf("%s stalled at %.2f s for %.1f s waiting for %s (readyState %d)", name, st.Time, st.Stalled, what, st.Ready)
		case time.Now().After(deadline):
			t.Fatalf("%s timed out after %s waiting for %s: at %.2f s, readyState %d", name, within, what, st.Time, st.Ready)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func playerErrors(ctx context.Context) string {
	var errs []string
	_ = chromedp.Run(ctx, chromedp.Evaluate(`window.herdTest ? herdTest.st.errors : []`, &errs))
	return strings.Join(errs, "; ")
}

// shakaTrickPlay: Shaka finds the master playlist's I-frame playlists
// (EXT-X-I-FRAME-STREAM-INF) and gives every variant a trick-mode video
// stream; trickPlay(4) then fetches segments of those streams and plays
// on from them without error.
func shakaTrickPlay(t *testing.T, ctx context.Context, site *httptest.Server, base string) {
	t.Helper()
	// A short buffering goal, so that the clip is not all buffered (and
	// trick play has nothing left to fetch) by the time trickPlay is called
	// on a slow machine.
	start := strings.Replace(shakaStart, "await p.attach(v);",
		"p.configure({streaming: {bufferingGoal: 2, rebufferingGoal: 1, bufferBehind: 2}});\n\tawait p.attach(v);", 1)
	require.NotEqual(t, shakaStart, start)
	openPlayer(t, ctx, site, "testdata/players/shaka-player.compiled.js", start, base+"master.m3u8")
	variants := evalJS[[]string](t, ctx, `herdTest.player.getManifest().variants.filter(v => v.video).map(v =>
		v.video.height + "p: " + (v.video.trickModeVideo ? "trick " + v.video.trickModeVideo.originalId : "none"))`)
	require.NotEmpty(t, variants, "Shaka found no video variants")
	for _, v := range variants {
		require.NotContains(t, v, "none", "Shaka found no I-frame (trick-mode) stream for a variant: %v", variants)
	}
	// Record the segments fetched for trick-mode streams.
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`(() => {
		const p = herdTest.player, trick = new Set(p.getManifest().variants.map(v => v.video && v.video.trickModeVideo).filter(Boolean));
		herdTest.trickFetches = [];
		p.getNetworkingEngine().registerRequestFilter((type, req, c) => {
			if (type === shaka.net.NetworkingEngine.RequestType.SEGMENT && c && trick.has(c.stream)) {
				herdTest.trickFetches.push(req.uris[0].split("/").pop() + " " + (req.headers.Range || ""));
			}
		});
	})()`, nil)))
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`herdTest.v.play().catch(e => herdTest.st.errors.push("play(): " + e.message))`, nil)))
	untilPlaying(t, ctx, "Shaka", "playback", `herdTest.v.currentTime > 0.5`, 20*time.Second)
	from := evalJS[float64](t, ctx, `herdTest.v.currentTime`)
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`herdTest.player.trickPlay(4)`, nil)))
	untilPlaying(t, ctx, "Shaka trick play", "I-frame segments", `herdTest.trickFetches.length > 0`, 15*time.Second)
	untilPlaying(t, ctx, "Shaka trick play", "the playhead to move on", fmt.Sprintf(`herdTest.v.currentTime > %f`, from+3), 15*time.Second)
	require.Empty(t, evalJS[[]string](t, ctx, `herdTest.st.errors`), "Shaka trick play: player errors")
	t.Logf("trick play from %.2f s to %.2f s; I-frame fetches: %v", from, evalJS[float64](t, ctx, `herdTest.v.currentTime`), evalJS[[]string](t, ctx, `herdTest.trickFetches`))
}
