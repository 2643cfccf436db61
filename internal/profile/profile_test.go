package profile_test

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/profile"
)

func TestBuiltins(t *testing.T) {
	t.Parallel()
	s := profile.Builtin()
	require.Equal(t, []string{"archive-hevc", "mp4-library", "web-cmaf-av1", "web-hls", "web-hls-auto"}, s.Names())
	hls, ok := s.Get("web-hls")
	require.True(t, ok)
	require.Equal(t, profile.FormatHLS, hls.Format)
	require.Len(t, hls.Video.Rungs, 5)
	require.Equal(t, profile.Bitrate(5_000_000), hls.Video.Rungs[0].Bitrate)
	require.InDelta(t, 4.0, hls.SegmentSeconds, 0)
	require.True(t, hls.Builtin)
	lib, _ := s.Get("mp4-library")
	require.Equal(t, []string{"ac3", "eac3"}, lib.Audio.Passthrough)
	require.Equal(t, profile.SubsMovText, lib.Subtitles)
	require.InDelta(t, 60.0, lib.ChunkSeconds, 0)
	hevc, _ := s.Get("archive-hevc")
	require.InDelta(t, 120.0, hevc.ChunkSeconds, 0)
	require.InDelta(t, 60.0, hls.ChunkSeconds, 0)
}

func TestCheckChunkSeconds(t *testing.T) {
	t.Parallel()
	s := profile.Builtin()
	for _, tc := range []struct {
		profile string
		seconds float64
		err     string
	}{
		{"web-hls", 0, ""},
		{"web-hls", 4, ""},
		{"web-hls", 3.9, "segment length"},
		{"web-hls", 3601, "segment length"},
		{"mp4-library", 0, ""},
		{"mp4-library", 10, ""},
		{"mp4-library", 60, ""},
		{"mp4-library", 9.5, "from 10 s to 3600 s for an mp4 profile"},
		{"archive-hevc", 3600, ""},
		{"archive-hevc", 3600.5, "from 10 s"},
		{"archive-hevc", -1, "positive number"},
		{"archive-hevc", math.NaN(), "positive number"},
	} {
		p, ok := s.Get(tc.profile)
		require.True(t, ok)
		err := p.CheckChunkSeconds(tc.seconds)
		if tc.err == "" {
			require.NoError(t, err, "%s %v", tc.profile, tc.seconds)
		} else {
			require.ErrorContains(t, err, tc.err, "%s %v", tc.profile, tc.seconds)
		}
	}
}

const valid = `
name: tiny
version: 2
format: hls
video:
  codec: h264
  rungs:
    - {height: 360, bitrate: 800k}
audio: {codec: aac}
`

func TestParseErrorsNameTheField(t *testing.T) {
	t.Parallel()
	p, err := profile.Parse([]byte(valid))
	require.NoError(t, err)
	require.Equal(t, "veryfast", p.Video.Preset, "defaults filled")
	require.Equal(t, 2, p.Audio.Channels)

	cases := []struct{ name, doc, want string }{
		{"unknown key", valid + "colour: red\n", "line 10: field colour not found"},
		{"bad bitrate", "name: x\nversion: 1\nformat: hls\nvideo:\n  codec: h264\n  rungs:\n    - {height: 360, bitrate: fast}\n", "line 7"},
		{"no rungs", "name: x\nversion: 1\nformat: hls\nvideo: {codec: h264}\n", "video.rungs"},
		{"bad format", "name: x\nversion: 1\nformat: avi\nvideo: {codec: h264}\n", "format"},
		{"crf range", "name: x\nversion: 1\nformat: mp4\nvideo: {codec: h264, crf: 99}\n", "video.crf"},
		{"rung height", "name: x\nversion: 1\nformat: hls\nvideo: {codec: h264, rungs: [{height: 9000, bitrate: 1M}]}\n", "video.rungs[0].height"},
		{"duplicate rung", "name: x\nversion: 1\nformat: hls\nvideo: {codec: h264, rungs: [{height: 360, bitrate: 1M}, {height: 360, bitrate: 1M}]}\n", "video.rungs[1].height"},
		{"version", "name: x\nversion: -1\nformat: mp4\nvideo: {codec: h264, crf: 20}\n", "version"},
		{"name", "name: Bad Name\nversion: 1\nformat: mp4\nvideo: {codec: h264, crf: 20}\n", "name"},
		{"copy in mp4", "name: x\nversion: 1\nformat: mp4\nvideo: {codec: h264, crf: 20}\naudio: {codec: copy}\n", "audio.codec"},
		{"hevc hls", "name: x\nversion: 1\nformat: hls\nvideo: {codec: hevc, rungs: [{height: 360, bitrate: 1M}]}\n", "video.codec"},
		{"preset", "name: x\nversion: 1\nformat: mp4\nvideo: {codec: h264, crf: 20, preset: turbo}\n", "video.preset"},
		{"ladder codec", ladders("{codec: vp9, rungs: [{height: 360, bitrate: 400k}]}"), "video.ladders[0].codec"},
		{"ladder of the first codec", ladders("{codec: h264, rungs: [{height: 360, bitrate: 400k}]}"), "video.ladders[0].codec"},
		{"two ladders", ladders("{codec: av1, rungs: [{height: 360, bitrate: 400k}]}, {codec: hevc, rungs: [{height: 240, bitrate: 200k}]}"), "video.ladders: one ladder beside video.codec's"},
		{"ladder without rungs", ladders("{codec: av1, rungs: []}"), "video.ladders[0].rungs"},
		{"ladder rung", ladders("{codec: hevc, rungs: [{height: 360, bitrate: 10k}]}"), "video.ladders[0].rungs[0].bitrate"},
		{"ladder preset", ladders("{codec: av1, preset: warp, rungs: [{height: 360, bitrate: 400k}]}"), "video.ladders[0].preset"},
		{"ladders in mp4", "name: x\nversion: 1\nformat: mp4\nvideo: {codec: h264, crf: 20, ladders: [{codec: av1, rungs: [{height: 360, bitrate: 400k}]}]}\n", "video.ladders: are for hls"},
		{"ladders on a gpu", "engine: nvenc\n" + ladders("{codec: av1, rungs: [{height: 360, bitrate: 400k}]}"), "encoded in software"},
		{"ladders split", "chunk_seconds: 60\n" + ladders("{codec: av1, rungs: [{height: 360, bitrate: 400k}]}"), "chunk_seconds: must be 0"},
		{"ssim floor of 1", "name: x\nversion: 1\nformat: mp4\nvideo: {codec: h264, crf: 20, min_quality: {ssim: 1}}\n", "video.min_quality.ssim"},
		{"vmaf floor out of range", "name: x\nversion: 1\nformat: mp4\nvideo: {codec: h264, crf: 20, min_quality: {vmaf: 120}}\n", "video.min_quality.vmaf"},
		{"an empty floor", "name: x\nversion: 1\nformat: mp4\nvideo: {codec: h264, crf: 20, min_quality: {}}\n", "video.min_quality: names no floor"},
		{"a vmaf floor split", "name: x\nversion: 1\nformat: mp4\nchunk_seconds: 60\nvideo: {codec: h264, crf: 20, min_quality: {vmaf: 80}}\n", "a profile with a VMAF floor"},
		{"a floor of what", "name: x\nversion: 1\nformat: mp4\nvideo: {codec: h264, crf: 20, min_quality: {psnr: 40}}\n", "field psnr not found"},
		{"a target of what", "name: x\nversion: 1\nformat: mp4\nvideo: {codec: h264, quality: {metric: psnr, target: 40}}\n", "video.quality.metric"},
		{"a vmaf target of 100", "name: x\nversion: 1\nformat: mp4\nvideo: {codec: h264, quality: {metric: vmaf, target: 100}}\n", "video.quality.target"},
		{"an ssim target above 1", "name: x\nversion: 1\nformat: mp4\nvideo: {codec: h264, quality: {metric: ssim, target: 93}}\n", "video.quality.target"},
		{"a crf beside a target", "name: x\nversion: 1\nformat: mp4\nvideo: {codec: h264, crf: 20, quality: {metric: ssim, target: 0.98}}\n", "video.crf: leave it out"},
		{"a fallback of an ssim target", "name: x\nversion: 1\nformat: mp4\nvideo: {codec: h264, quality: {metric: ssim, target: 0.98, fallback: 0.97}}\n", "video.quality.fallback"},
		{"a min above the max", "name: x\nversion: 1\nformat: mp4\nvideo: {codec: h264, quality: {metric: ssim, target: 0.98, min_bitrate: 2M, max_bitrate: 1M}}\n", "video.quality.min_bitrate"},
		{"a target on a gpu", "name: x\nversion: 1\nformat: mp4\nengine: nvenc\nvideo: {codec: h264, quality: {metric: ssim, target: 0.98}}\n", "needs engine software"},
		{"a rung's target without one", "name: x\nversion: 1\nformat: hls\nvideo: {codec: h264, rungs: [{height: 360, bitrate: 800k, quality: {target: 80}}]}\n", "video.rungs[0].quality: needs video.quality"},
		{"a rung's target out of range", "name: x\nversion: 1\nformat: hls\nvideo: {codec: h264, quality: {metric: vmaf, target: 93}, rungs: [{height: 360, bitrate: 800k, quality: {target: 120}}]}\n", "video.rungs[0].quality.target"},
		{"hevc with a vmaf target and no fallback", "name: x\nversion: 1\nformat: mkv\nvideo: {codec: hevc, quality: {metric: vmaf, target: 95}}\n", "video.quality.fallback: is needed with hevc"},
		{"a vmaf target split", "name: x\nversion: 1\nformat: mp4\nchunk_seconds: 60\nvideo: {codec: h264, quality: {metric: vmaf, target: 95}}\n", "no SSIM fallback"},
	}
	for _, tc := range cases {
		_, err := profile.Parse([]byte(tc.doc))
		require.Error(t, err, tc.name)
		require.Contains(t, err.Error(), tc.want, tc.name)
	}
}

// ladders is an hls profile with an H.264 ladder and the ladders given.
func ladders(l string) string {
	return "name: x\nversion: 1\nformat: hls\nvideo: {codec: h264, rungs: [{height: 360, bitrate: 800k}], ladders: [" + l + "]}\n"
}

// TestLadders: an HEVC ladder beside H.264 is one profile line; a ladder
// takes video.preset unless it names its own.
func TestLadders(t *testing.T) {
	t.Parallel()
	p, err := profile.Parse([]byte(ladders("{codec: hevc, rungs: [{height: 720, bitrate: 2M}, {height: 360, bitrate: 600k}]}")))
	require.NoError(t, err)
	require.Equal(t, []string{"h264", "hevc"}, p.Codecs())
	require.Equal(t, "veryfast", p.Video.Ladders[0].Preset, "video.preset unless the ladder names one")
	require.Len(t, p.Video.Ladders[0].Rungs, 2)
	p, err = profile.Parse([]byte(ladders("{codec: av1, preset: fast, rungs: [{height: 360, bitrate: 400k}]}")))
	require.NoError(t, err)
	require.Equal(t, "fast", p.Video.Ladders[0].Preset)

	av1, ok := profile.Builtin().Get("web-cmaf-av1")
	require.True(t, ok)
	require.Equal(t, []string{"h264", "av1"}, av1.Codecs())
	require.Zero(t, av1.ChunkSeconds, "a ladder of two codecs is never split")
	require.ErrorContains(t, av1.CheckChunkSeconds(60), "must be 0")
}

func TestLoadUserProfiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tiny.yaml"), []byte(valid), 0o644))
	override := "name: web-hls\nversion: 7\nformat: hls\nvideo: {codec: h264, rungs: [{height: 240, bitrate: 300k}]}\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "mine.yml"), []byte(override), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "README.txt"), []byte("ignored"), 0o644))
	s, err := profile.Load(dir)
	require.NoError(t, err)
	p, ok := s.Get("tiny")
	require.True(t, ok)
	require.False(t, p.Builtin)
	hls, _ := s.Get("web-hls")
	require.Equal(t, 7, hls.Version, "a user profile replaces the built-in of the same name")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "broken.yaml"), []byte("name: x\nversion: 0\n"), 0o644))
	_, err = profile.Load(dir)
	require.ErrorContains(t, err, "broken.yaml")

	s, err = profile.Load(filepath.Join(dir, "missing"))
	require.NoError(t, err, "a missing folder means only the built-ins")
	require.Len(t, s.All(), 5)
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(valid))
	for _, name := range []string{"web-hls", "web-cmaf-av1", "mp4-library", "archive-hevc"} {
		b, err := os.ReadFile(filepath.Join("builtin", name+".yaml"))
		if err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := profile.Parse(data)
		if err != nil {
			return
		}
		// Whatever parses must validate.
		require.NoError(t, p.Validate())
	})
}

func TestQualityTargets(t *testing.T) {
	auto, ok := profile.Builtin().Get("web-hls-auto")
	require.True(t, ok)
	q := auto.Video.Quality
	require.NotNil(t, q)
	require.Equal(t, profile.Target{Metric: profile.MetricVMAF, Target: 93, Fallback: 0.98, Step: profile.DefaultVMAFStep, Tolerance: profile.DefaultVMAFTolerance, DropWithin: profile.DefaultDropWithin}, *q)
	// Derived per rung: 8 points less per halving of the height.
	require.Equal(t, 93.0, q.RungTarget(1080, 1080))
	require.Equal(t, 85.0, q.RungTarget(1080, 540))
	require.InDelta(t, 88.32, q.RungTarget(1080, 720), 0.01)
	require.Equal(t, 77.0, q.RungTarget(1080, 270))
	require.Equal(t, 10.0, (&profile.Target{Metric: profile.MetricVMAF, Target: 50, Step: 25}).RungTarget(1080, 120), "never under a tenth of the scale")
	// Where VMAF cannot be measured: the SSIM fallback, with its own step.
	f := q.For(profile.MetricSSIM)
	require.NotNil(t, f)
	require.Equal(t, 0.98, f.Target)
	require.Equal(t, 0.97, f.RungTarget(720, 360))
	require.Same(t, q, q.For(profile.MetricVMAF))
	require.Nil(t, (&profile.Target{Metric: profile.MetricVMAF, Target: 93}).For(profile.MetricSSIM), "no fallback")

	// The library profiles take the same block.
	for _, doc := range []string{
		"name: lib\nversion: 1\nformat: mp4\nvideo: {codec: h264, quality: {metric: vmaf, target: 95, max_bitrate: 8M}}\n",
		"name: arc\nversion: 1\nformat: mkv\nvideo: {codec: hevc, quality: {metric: ssim, target: 0.985}}\n",
	} {
		p, err := profile.Parse([]byte(doc))
		require.NoError(t, err, doc)
		require.Zero(t, p.Video.CRF)
	}
}
