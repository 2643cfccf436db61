package media

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/testenv"
)

// The libvmaf generation is read from ffmpeg's help of the filter:
// ffmpeg 4.x (libvmaf 1.x) takes model_path, 5.0 and later (libvmaf 2.x
// and 3.x) model; an ffmpeg without the filter has none.
func TestVMAFGeneration(t *testing.T) {
	t.Parallel()
	v1 := `Filter libvmaf
  Calculate the VMAF between two video streams.
libvmaf AVOptions:
  model_path        <string>     ..FV..... Set the model to be used for computing vmaf. (default "/usr/local/share/model/vmaf_v0.6.1.pkl")
  log_path          <string>     ..FV..... Set the file path to be used to store logs.
  n_subsample       <int>        ..FV..... Set interval for frame subsampling used when computing vmaf.`
	v2 := `Filter libvmaf
  Calculate the VMAF between two video streams.
libvmaf AVOptions:
   log_path          <string>     ..FV....... Set the file path to be used to write log.
   model             <string>     ..FV....... Set the model to be used for computing vmaf. (default "version=vmaf_v0.6.1")
   feature           <string>     ..FV....... Set the feature to be used for computing vmaf.
   n_subsample       <int>        ..FV....... Set interval for frame subsampling used when computing vmaf.`
	for _, tc := range []struct {
		help string
		gen  int
		ok   bool
	}{
		{v1, 1, true},
		{v2, 2, true},
		{"Unknown filter 'libvmaf'.", 0, false},
		{"", 0, false},
	} {
		gen, ok := vmafGeneration(tc.help)
		require.Equal(t, tc.ok, ok, tc.help)
		require.Equal(t, tc.gen, gen, tc.help)
	}
}

// The measuring ffmpeg's argv, both generations: raw frames from two
// pipes, the output first (libvmaf's main input), a model file for 1.x
// and a built-in model by version for later ones, the 4K model above
// 1440 lines where there is one.
func TestVMAFArgsGolden(t *testing.T) {
	t.Parallel()
	head := []string{"-nostdin", "-hide_banner", "-nostats", "-v", "error", "-f", "yuv4mpegpipe", "-i", "pipe:0", "-lavfi"}
	cut := "[0:v]split[a][b];[a]crop=1920:1080:0:0[ref];[b]crop=1920:1080:1920:0[dist];[dist][ref]libvmaf="
	v1 := &VMAF{FFmpeg: "/opt/ffmpeg", Gen: 1, Model: "/m/it's/vmaf_v0.6.1.pkl"}
	require.Equal(t, append(append([]string{}, head...),
		cut+`model_path='/m/it\'\''s/vmaf_v0.6.1.pkl':log_path='/tmp/a\:b/v.json':log_fmt=json:n_threads=2`, "-f", "null", "-"),
		v1.Args("/tmp/a:b/v.json", 1920, 1080), "a quote and a colon in paths are escaped for both of ffmpeg's parses")
	require.Contains(t, v1.Args("/tmp/v.json", 3840, 2160)[len(head)], "model_path='/m/it\\'\\''s/vmaf_v0.6.1.pkl'", "1.x has no 4K model here: the default one")
	require.Equal(t, "vmaf_v0.6.1", v1.vmafModel(2160))
	v4k := *v1
	v4k.Model4K = "/m/vmaf_4k_v0.6.1.pkl"
	require.Contains(t, v4k.Args("/tmp/v.json", 3840, 2160)[len(head)], "model_path='/m/vmaf_4k_v0.6.1.pkl':", "a 4K source: the 4K model named (--vmaf-4k-model)")
	require.Contains(t, v4k.Args("/tmp/v.json", 2560, 1440)[len(head)], "model_path='/m/it\\'\\''s/vmaf_v0.6.1.pkl':", "1440 lines: the default model")
	require.Equal(t, "vmaf_4k_v0.6.1", v4k.vmafModel(2160), "what the score records")
	sub := *v1
	sub.Subsample = 2
	require.Contains(t, sub.Args("/tmp/v.json", 640, 360)[len(head)], ":n_subsample=2", "libvmaf's own subsampling, for the search's probes")
	v2 := &VMAF{FFmpeg: "/usr/bin/ffmpeg", Gen: 2}
	require.Equal(t, append(append([]string{}, head...),
		cut+`model=version=vmaf_v0.6.1:log_path='/tmp/v.json':log_fmt=json:n_threads=2`, "-f", "null", "-"),
		v2.Args("/tmp/v.json", 1920, 1080))
	require.Contains(t, v2.Args("/tmp/v.json", 3840, 2160)[len(head)], "model=version=vmaf_4k_v0.6.1")

	// What herd's ffmpeg feeds it: the source and the output side by side,
	// at the display size, the source on the output's timeline (as SSIM
	// reads it) and both in the windows only; nothing but frames on stdout.
	pl := &Plan{Width: 1280, Height: 720, FPS: 25, Duration: 60, Demuxer: "mov", Video: VideoPlan{PixFmt: "yuv420p"}}
	feed := pl.VMAFArgs("/in/source.bin", "mov", "/tmp/rung.mp4", [][2]float64{{0, 2}, {30, 32}}, false)
	require.NotContains(t, feed, "-progress")
	fc := slices.Index(feed, "-filter_complex")
	require.Equal(t, []string{"-f", "mov", "-i", "file:/tmp/rung.mp4"}, feed[fc-4:fc])
	g := feed[fc+1]
	require.Contains(t, g, "select='gte(t\\,-0.020000)*lt(t\\,1.980000)+gte(t\\,29.980000)*lt(t\\,31.980000)',scale=1280:720:flags=bicubic,setsar=1,format=yuv420p,settb=AVTB,setpts=N/TB/25[ref]")
	require.Contains(t, g, "[1:v:0]setpts=PTS-STARTPTS,trim=end=32.000000,select='gte(t\\,-0.020000)", "the output read to the last window only")
	require.True(t, strings.HasSuffix(g, "[ref][dist]hstack=inputs=2:shortest=1[pair]"), g)
	require.Equal(t, []string{"-map", "[pair]", "-r", "25", "-f", "yuv4mpegpipe", "-strict", "-1", "pipe:1"}, feed[fc+2:])
}

// Windows are whole stretches of frames: the start of the first and the
// middle sampled segment, or of the output's start and middle.
// Sampled verification measures SSIM and PSNR on a stretch for each
// 30 s of output (two at least, one per sampled segment at most), each
// in the middle of its share of the sampled segments between the first and
// the last (the first, then the last, too where those are too few), two
// seconds at most.
func TestQualityWindows(t *testing.T) {
	segs := [][2]float64{{0, 4}, {28, 32}, {60, 64}, {88, 92}, {116, 120}}
	require.Equal(t, [][2]float64{{28, 30}, {88, 90}}, (&Plan{Duration: 60, FPS: 25}).QualityWindows(segs), "a minute: two, not the first or the last")
	require.Equal(t, [][2]float64{{28, 30}, {60, 62}, {88, 90}}, (&Plan{Duration: 90, FPS: 25}).QualityWindows(segs), "three: the ones between the first and the last")
	require.Equal(t, [][2]float64{{0, 2}, {28, 30}}, (&Plan{Duration: 30, FPS: 25}).QualityWindows(segs[:3]), "too few between: the first too")
	require.Equal(t, [][2]float64{{0, 2}, {28, 30}, {60, 62}, {88, 90}, {116, 118}}, (&Plan{Duration: 7200, FPS: 25}).QualityWindows(segs), "one per sampled segment")
	require.Equal(t, [][2]float64{{0, 1}, {2.04, 3}}, (&Plan{Duration: 3, FPS: 25}).QualityWindows([][2]float64{{0, 1}, {2.02, 3}}), "on the frame grid, as long as the segment at most")
	require.Nil(t, (&Plan{Duration: 60, FPS: 25}).QualityWindows(nil), "no sampled segments: everything is compared")
}

func TestVMAFWindows(t *testing.T) {
	t.Parallel()
	pl := &Plan{Duration: 60, FPS: 25}
	require.Equal(t, [][2]float64{{0, 2}, {30, 32}}, pl.VMAFWindows(nil))
	require.Equal(t, [][2]float64{{0, 2}, {2.52, 4.52}}, (&Plan{Duration: 5, FPS: 25}).VMAFWindows(nil), "on the frame grid")
	require.Equal(t, [][2]float64{{0, 2}, {16, 18}}, pl.VMAFWindows([][2]float64{{0, 4}, {8, 12}, {16, 20}, {24, 28}, {56, 60}}))
	require.Equal(t, [][2]float64{{0, 1}}, pl.VMAFWindows([][2]float64{{0, 1}}))
	require.Equal(t, [][2]float64{{0, 2}}, (&Plan{Duration: 3, FPS: 25}).VMAFWindows(nil), "one window, two seconds at most")
}

// A real measuring ffmpeg (libvmaf 1.x) scores what herd's ffmpeg feeds
// it: a good encode well above a bad one, on the windows' frames only.
func TestMeasureVMAF(t *testing.T) {
	t.Parallel()
	tools := needFFmpeg(t)
	ffmpeg, model := testenv.VMAF(t)
	ctx := context.Background()
	v, err := DetectVMAF(ctx, ffmpeg, model, "")
	require.NoError(t, err)
	require.Equal(t, 1, v.Gen)
	_, err = DetectVMAF(ctx, tools.ffmpeg(), "", "")
	require.ErrorIs(t, err, ErrNoVMAF, "Debian's ffmpeg has none")
	_, err = DetectVMAF(ctx, ffmpeg, "", "")
	require.ErrorContains(t, err, "--vmaf-model", "libvmaf 1.x needs a model file")
	// A quote and a colon in the model's path (herd's own copy, here).
	own, err := DetectVMAF(ctx, ffmpeg, "", filepath.Join(t.TempDir(), "it's:models"))
	require.NoError(t, err)
	require.FileExists(t, own.Model, "herd's own copy, written where asked")
	require.FileExists(t, own.Model+".model")
	none, err := SetupVMAF(ctx, VMAFConfig{}, tools.ffmpeg(), slog.New(slog.DiscardHandler))
	require.NoError(t, err, "an encoding ffmpeg without libvmaf is no error")
	require.Nil(t, none)
	_, err = SetupVMAF(ctx, VMAFConfig{Measure: tools.ffmpeg()}, tools.ffmpeg(), slog.New(slog.DiscardHandler))
	require.ErrorIs(t, err, ErrNoVMAF, "one the operator named must measure")

	input := clip(t, "in.mp4", "320x180", "5")
	info, err := tools.Admit(ctx, input, Limits{})
	require.NoError(t, err)
	pl, err := NewPlan(info, builtin(t, "mp4-library"))
	require.NoError(t, err)
	dir := t.TempDir()
	score := func(pl *Plan, input, crf string) *VMAFScore {
		out := filepath.Join(dir, "crf"+crf+".mp4")
		b, err := exec.Command(tools.ffmpeg(), "-y", "-v", "error", "-i", input, "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", crf, out).CombinedOutput()
		require.NoError(t, err, string(b))
		s, ran, err := tools.MeasureVMAF(ctx, own, pl, input, "mov", out, pl.VMAFWindows(nil), true, dir)
		require.NoError(t, err)
		require.Len(t, ran, 2)
		return s
	}
	good, bad := score(pl, input, "18"), score(pl, input, "45")
	require.Equal(t, 2*2*25, good.Frames, "two windows of two seconds at 25 fps")
	require.Equal(t, "vmaf_v0.6.1", good.Model)
	require.Greater(t, good.Mean, 85.0)
	require.Greater(t, good.Mean, bad.Mean+15, "good %+v, bad %+v", good, bad)
	require.LessOrEqual(t, bad.Low, bad.Mean)

	// At 30 fps: every frame of the windows, none twice.
	input30 := filepath.Join(t.TempDir(), "in30.mp4")
	require.NoError(t, testenv.Clip{Size: "320x180", Rate: 30, Seconds: 5}.Make(input30))
	info, err = tools.Admit(ctx, input30, Limits{})
	require.NoError(t, err)
	pl30, err := NewPlan(info, builtin(t, "mp4-library"))
	require.NoError(t, err)
	s30 := score(pl30, input30, "18")
	require.Equal(t, 2*2*30, s30.Frames, "two windows of two seconds at 30 fps")
	require.Greater(t, s30.Mean, 85.0)

	// A Matroska output with AAC audio, whose video starts after the
	// audio's priming: its frames are counted from its first.
	plMKV, err := NewPlan(info, builtin(t, "archive-hevc"))
	require.NoError(t, err)
	mkv := filepath.Join(dir, "out.mkv")
	b, err := exec.Command(tools.ffmpeg(), "-y", "-v", "error", "-i", input30, "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-c:a", "aac", mkv).CombinedOutput()
	require.NoError(t, err, string(b))
	sm, _, err := tools.MeasureVMAF(ctx, own, plMKV, input30, "matroska", mkv, plMKV.VMAFWindows(nil), true, dir)
	require.NoError(t, err)
	require.Equal(t, 2*2*30, sm.Frames)
	require.InDelta(t, s30.Mean, sm.Mean, 1.5, "the same frames paired as in the MP4")
}

// Verification records VMAF on each rung where a measuring ffmpeg is
// named: two one-second windows here (the first and the middle sampled
// segment), beside SSIM and PSNR; the commands it ran are recorded.
func TestVerifyRecordsVMAF(t *testing.T) {
	t.Parallel()
	tools, pl, input, dir, _ := segmentedLadder(t)
	ffmpeg, model := testenv.VMAF(t)
	v, err := DetectVMAF(context.Background(), ffmpeg, model, "")
	require.NoError(t, err)
	tools.VMAF = v
	outs, ran, err := tools.Verify(context.Background(), pl, input, dir)
	require.NoError(t, err)
	rungs := 0
	for _, o := range outs {
		if o.Kind != "hls" || o.Width == 0 {
			continue
		}
		rungs++
		require.NotNil(t, o.VMAF, o.Name)
		require.Equal(t, 50, o.VMAF.Frames, "%s: two windows of a second at 25 fps", o.Name)
		require.Greater(t, o.VMAF.Mean, 60.0, o.Name)
		require.Greater(t, o.SSIM, 0.9, o.Name)
	}
	require.NotZero(t, rungs)
	measured := 0
	for _, c := range ran {
		if c[0] == ffmpeg {
			measured++
		}
	}
	require.Equal(t, rungs, measured, "one measuring run a rung")
}

// A profile's floor of quality (video.min_quality) fails an output below
// it, permanently, naming the output, the metric, what was measured and
// the floor; outputs above it pass. A VMAF floor is checked where VMAF is
// measured.
func TestVerifyQualityFloor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tools, pl, input, dir, _ := segmentedLadder(t)
	verify := func(q profile.Quality) error {
		pl.MinQuality = &q
		_, _, err := tools.Verify(ctx, pl, input, dir)
		return err
	}
	require.NoError(t, verify(profile.Quality{SSIM: 0.5}))
	err := verify(profile.Quality{SSIM: 0.99999})
	oe, ok := errors.AsType[*OutputError](err)
	require.True(t, ok, "%v", err)
	require.Equal(t, CodeQualityFloor, oe.Code)
	require.Regexp(t, `^\(\d+p\): SSIM 0\.\d{4} is below the profile's floor of 0\.99999 \(video\.min_quality\)`, oe.Problem)
	require.NoError(t, verify(profile.Quality{VMAF: 99.9}), "no VMAF measured, no VMAF floor checked")

	ffmpeg, model := testenv.VMAF(t)
	v, err := DetectVMAF(ctx, ffmpeg, model, "")
	require.NoError(t, err)
	tools.VMAF = v
	require.NoError(t, verify(profile.Quality{VMAF: 20}))
	err = verify(profile.Quality{VMAF: 99.9})
	require.ErrorContains(t, err, "is below the profile's floor of 99.9")
	require.ErrorContains(t, err, "VMAF")
}

// --vmaf-4k-model: a libvmaf 1.x scores sources taller than 1440 lines
// with the file named, which must be there; a later libvmaf has the model
// built in and needs none.
func TestVMAF4KModel(t *testing.T) {
	t.Parallel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	model := filepath.Join(dir, "vmaf_4k_v0.6.1.pkl")
	require.NoError(t, os.WriteFile(model, []byte("model"), 0o600))
	v1 := &VMAF{Gen: 1, Model: "/m/vmaf_v0.6.1.pkl"}
	require.ErrorContains(t, v1.use4K(filepath.Join(dir, "missing.pkl"), quiet), "VMAF 4K model")
	require.Empty(t, v1.Model4K)
	require.NoError(t, v1.use4K(model, quiet))
	require.Equal(t, model, v1.modelFile(2160))
	require.Equal(t, "/m/vmaf_v0.6.1.pkl", v1.modelFile(1080))
	v2 := &VMAF{Gen: 2}
	require.NoError(t, v2.use4K(filepath.Join(dir, "missing.pkl"), quiet), "built in: the file is not read")
	require.Empty(t, v2.Model4K)
	require.Equal(t, "vmaf_4k_v0.6.1", v2.vmafModel(2160))
}
