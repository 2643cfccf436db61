package media

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Eyevinn/hls-m3u8/m3u8"
	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/pack"
	"github.com/herdhq/herd/internal/profile"
)

// ffprobeCodec is the codec, profile and level ffprobe reads from a file's
// first video stream's own headers.
func ffprobeCodec(t *testing.T, path string) (codec, prof string, level int) {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-f", "mov", "-select_streams", "v:0",
		"-show_entries", "stream=codec_name,profile,level", "-of", "json", "file:"+path).Output()
	require.NoError(t, err)
	var r struct {
		Streams []struct {
			Codec   string `json:"codec_name"`
			Profile string `json:"profile"`
			Level   int    `json:"level"`
		} `json:"streams"`
	}
	require.NoError(t, json.Unmarshal(out, &r))
	require.Len(t, r.Streams, 1)
	return r.Streams[0].Codec, r.Streams[0].Profile, r.Streams[0].Level
}

// TestWebCMAFAV1 runs a 3 s 360p clip through web-cmaf-av1 (with 1 s
// segments, so that the clip has three) and reads what a player reads:
// the master playlist with hls-m3u8 and the manifest with dash-mpd offer an
// SVT-AV1 ladder and an H.264 one over the same segment grid, every
// variant's CODECS is what its init segment holds (its codec, profile and
// level as ffprobe reads them), every segment of either codec starts with a
// keyframe, and both ladders decode.
func TestWebCMAFAV1(t *testing.T) {
	t.Parallel()
	tools := needFFmpeg(t)
	ctx := context.Background()
	input := clip(t, "in.mp4", "640x360", "3")
	p := *builtin(t, "web-cmaf-av1")
	p.SegmentSeconds = 1
	pl := admitted(t, input, &p)
	require.Equal(t, []string{"h264", "av1"}, pl.Codecs())
	dir := t.TempDir()
	_, err := tools.Encode(ctx, pl, input, dir, nil)
	require.NoError(t, err)
	_, err = tools.Thumbnails(ctx, pl, input, dir)
	require.NoError(t, err)
	outs, _, err := tools.Verify(ctx, pl, input, dir)
	require.NoError(t, err)

	master, err := pack.ReadMaster(filepath.Join(dir, MasterName))
	require.NoError(t, err)
	var variants []*m3u8.Variant
	for _, v := range master.Variants {
		if !v.Iframe {
			variants = append(variants, v)
		}
	}
	require.Len(t, variants, 4, "360p and 240p in H.264 and in AV1")
	byCodec := map[string][]string{}
	for _, v := range variants {
		st, mp, err := pack.ReadPlaylistStream(dir, v.URI)
		require.NoError(t, err)
		init := filepath.Join(dir, mp.Map.URI)
		segs := pack.Segments(mp)
		require.Len(t, segs, 3)
		first := filepath.Join(t.TempDir(), "first.mp4")
		catFiles(t, first, init, filepath.Join(dir, segs[0].URI))
		codec, prof, level := ffprobeCodec(t, first)
		video, audio, ok := strings.Cut(v.Codecs, ",")
		require.True(t, ok, "video and audio codecs: %s", v.Codecs)
		require.Equal(t, "mp4a.40.2", audio)
		require.Equal(t, st.Codec, video, "CODECS is what the init segment says")
		switch codec {
		case "av1":
			require.Equal(t, "Main", prof)
			require.Regexp(t, `^av01\.0\.\d\dM\.08$`, video)
			require.Equal(t, level, atoi(t, video[7:9]), "seq_level_idx")
		case "h264":
			require.Equal(t, "High", prof)
			require.Regexp(t, `^avc1\.64[0-9A-F]{4}$`, video)
			require.Equal(t, fmt.Sprintf("%02X", level), video[9:], "level_idc")
		default:
			t.Fatalf("%s holds %s", v.URI, codec)
		}
		byCodec[codec] = append(byCodec[codec], v.Resolution)

		// Every segment starts with a keyframe (ffprobe decodes its first
		// frame); all of them decode.
		all := []string{init}
		for _, s := range segs {
			joined := filepath.Join(t.TempDir(), "seg.mp4")
			catFiles(t, joined, init, filepath.Join(dir, s.URI))
			pt, key := firstFrame(t, joined)
			require.True(t, key, "%s does not start with a keyframe", s.URI)
			require.Equal(t, "I", pt, s.URI)
			all = append(all, filepath.Join(dir, s.URI))
		}
		whole := filepath.Join(t.TempDir(), "all.mp4")
		catFiles(t, whole, all...)
		decodeNull(t, "mov", whole)
	}
	require.Equal(t, map[string][]string{"h264": {"640x360", "426x240"}, "av1": {"640x360", "426x240"}}, byCodec)

	// The manifest: one video adaptation set per codec, the same rungs.
	m, err := pack.ReadManifest(filepath.Join(dir, ManifestName))
	require.NoError(t, err)
	sets := map[string][]string{}
	priority := map[string]uint32{}
	for _, as := range m.Periods[0].AdaptationSets {
		if as.ContentType != "video" {
			continue
		}
		for _, r := range as.Representations {
			fam, _, _ := strings.Cut(r.Codecs, ".")
			sets[fam] = append(sets[fam], r.Codecs)
			if as.SelectionPriority != nil {
				priority[fam] = *as.SelectionPriority
			}
		}
	}
	require.Len(t, sets, 2, "%v", sets)
	require.Greater(t, priority["av01"], priority["avc1"], "AV1 preferred where it decodes: %v", priority)
	require.Len(t, sets["av01"], 2)
	require.Len(t, sets["avc1"], 2)

	// Verification names each rung by its codec and measures both.
	for name, codec := range map[string]string{"360p": "h264", "240p": "h264", "360p-av1": "av1", "240p-av1": "av1"} {
		o := outputNamed(t, outs, name)
		require.Equal(t, codec, o.Codec, name)
		require.Equal(t, 3, o.Segments, name)
		require.Greater(t, o.SSIM, 0.9, name)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n := 0
	for _, c := range s {
		require.True(t, c >= '0' && c <= '9', s)
		n = n*10 + int(c-'0')
	}
	return n
}

// TestHEVCLadder: an HEVC ladder beside H.264 is one profile line, and
// what it makes passes packaging and verification: hvc1 renditions whose
// every segment starts with an IDR (x265's forced keyframes are IDRs, not
// CRAs), CODECS with the profile, tier and level from hvcC, and its own
// adaptation set in the manifest.
func TestHEVCLadder(t *testing.T) {
	t.Parallel()
	tools := needFFmpeg(t)
	ctx := context.Background()
	p, err := profile.Parse([]byte("name: web-hevc\nversion: 1\nformat: hls\nsegment_seconds: 1\n" +
		"video: {codec: h264, preset: ultrafast, rungs: [{height: 180, bitrate: 400k}], ladders: [{codec: hevc, rungs: [{height: 180, bitrate: 300k}]}]}\n" +
		"audio: {codec: none}\n"))
	require.NoError(t, err)
	input := clip(t, "in.mp4", "320x180", "3")
	pl := admitted(t, input, p)
	dir := t.TempDir()
	_, err = tools.Encode(ctx, pl, input, dir, nil)
	require.NoError(t, err)
	outs, _, err := tools.Verify(ctx, pl, input, dir)
	require.NoError(t, err)
	require.Equal(t, "hevc", outputNamed(t, outs, "180p-hevc").Codec)
	require.Equal(t, "h264", outputNamed(t, outs, "180p").Codec)

	master, err := pack.ReadMaster(filepath.Join(dir, MasterName))
	require.NoError(t, err)
	var hevc *m3u8.Variant
	for _, v := range master.Variants {
		if !v.Iframe && strings.HasPrefix(v.Codecs, "hvc1.") {
			hevc = v
		}
	}
	require.NotNil(t, hevc, "no hvc1 variant")
	st, mp, err := pack.ReadPlaylistStream(dir, hevc.URI)
	require.NoError(t, err, "every segment starts with an IDR")
	require.Equal(t, st.Codec, hevc.Codecs)
	segs := pack.Segments(mp)
	require.Len(t, segs, 3)
	first := filepath.Join(t.TempDir(), "first.mp4")
	catFiles(t, first, filepath.Join(dir, mp.Map.URI), filepath.Join(dir, segs[1].URI))
	codec, prof, level := ffprobeCodec(t, first)
	require.Equal(t, "hevc", codec)
	require.Equal(t, "Main", prof)
	require.Equal(t, fmt.Sprintf("hvc1.1.6.L%d.", level), hevc.Codecs[:len(fmt.Sprintf("hvc1.1.6.L%d.", level))])

	m, err := pack.ReadManifest(filepath.Join(dir, ManifestName))
	require.NoError(t, err)
	var sets []string
	for _, as := range m.Periods[0].AdaptationSets {
		fam, _, _ := strings.Cut(as.Representations[0].Codecs, ".")
		sets = append(sets, string(as.ContentType)+" "+fam)
	}
	require.Equal(t, []string{"video avc1", "video hvc1"}, sets)
}
