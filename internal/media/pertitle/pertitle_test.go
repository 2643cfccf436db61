// Package pertitle_test runs per-title encodes end to end on real clips
// (a slow suite of its own): the search, the encode at what it chose,
// verification and its quality gate, and an independent measurement of
// the result afterwards.
package pertitle_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/testenv"
)

// cut makes a 2 s 640x360 clip of a real file under ../testdata.
func cut(t *testing.T, name string, from float64) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), strings.TrimSuffix(name, filepath.Ext(name))+".mp4")
	require.NoError(t, testenv.FFmpeg("-ss", strconv.FormatFloat(from, 'f', -1, 64), "-i", filepath.Join("..", "testdata", name), "-t", "2",
		"-vf", "scale=640:360,setsar=1", "-an", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", out))
	return out
}

// ladder plans, searches (when the profile has a target), encodes and
// verifies input with profile p; it returns the plan, the outputs and
// the output folder.
func ladder(t *testing.T, tools media.Tools, input string, p *profile.Profile) (*media.Plan, []media.Output, string) {
	t.Helper()
	ctx := context.Background()
	info, err := tools.Admit(ctx, input, media.Limits{})
	require.NoError(t, err)
	pl, err := media.NewPlan(info, p)
	require.NoError(t, err)
	if pl.Quality != nil {
		s, _, err := tools.Search(ctx, pl, input, t.TempDir(), pl.SearchMetric(tools.VMAF), nil)
		require.NoError(t, err)
		require.NoError(t, pl.ApplySearch(*s))
		require.NoError(t, pl.Validate())
	}
	out := t.TempDir()
	_, err = tools.Encode(ctx, pl, input, out, nil)
	require.NoError(t, err)
	_, err = tools.Thumbnails(ctx, pl, input, out)
	require.NoError(t, err)
	outs, _, err := tools.Verify(ctx, pl, input, out)
	require.NoError(t, err)
	return pl, outs, out
}

// videoBytes is the size of the renditions' segments (the clips have no
// audio: every one is video).
func videoBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	matches, err := filepath.Glob(filepath.Join(dir, "*.m4s"))
	require.NoError(t, err)
	for _, m := range matches {
		st, err := os.Stat(m)
		require.NoError(t, err)
		n += st.Size()
	}
	require.NotZero(t, n)
	return n
}

var ssimAll = regexp.MustCompile(`All:([0-9.]+)`)

// independent measures a rendition (its media playlist) against the
// source over every frame, without herd: SSIM with ffmpeg's own filter,
// or VMAF with the measuring ffmpeg fed both pictures side by side.
func independent(t *testing.T, vmafFFmpeg, model, source, playlist string) (ssim, vmaf float64) {
	t.Helper()
	pair := "[0:v]format=yuv420p,setpts=N/TB/25[a];[1:v]scale=640:360:flags=bicubic,format=yuv420p,setpts=N/TB/25[b];"
	cmd := exec.Command("ffmpeg", "-v", "info", "-hide_banner", "-i", source, "-allowed_extensions", "ALL", "-i", playlist,
		"-filter_complex", pair+"[b][a]ssim=shortest=1", "-f", "null", "-")
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, string(b))
	m := ssimAll.FindSubmatch(b)
	require.NotNil(t, m, string(b))
	ssim, err = strconv.ParseFloat(string(m[1]), 64)
	require.NoError(t, err)
	if vmafFFmpeg == "" {
		return ssim, 0
	}
	feed := exec.Command("ffmpeg", "-v", "error", "-i", source, "-allowed_extensions", "ALL", "-i", playlist,
		"-filter_complex", pair+"[a][b]hstack=shortest=1", "-r", "25", "-f", "yuv4mpegpipe", "-strict", "-1", "-")
	measure := exec.Command(vmafFFmpeg, "-v", "info", "-f", "yuv4mpegpipe", "-i", "-",
		"-lavfi", "[0:v]split[x][y];[x]crop=640:360:0:0[r];[y]crop=640:360:640:0[d];[d][r]libvmaf=model_path="+model, "-f", "null", "-")
	pipe, err := feed.StdoutPipe()
	require.NoError(t, err)
	measure.Stdin = pipe
	var log bytes.Buffer
	measure.Stderr = &log
	require.NoError(t, feed.Start())
	require.NoError(t, measure.Run(), log.String())
	require.NoError(t, feed.Wait())
	m = regexp.MustCompile(`VMAF score[:=] ([0-9.]+)`).FindSubmatch(log.Bytes())
	require.NotNil(t, m, log.String())
	vmaf, err = strconv.ParseFloat(string(m[1]), 64)
	require.NoError(t, err)
	return ssim, vmaf
}

// TestPerTitleLadders encodes an easy clip (a screen recording: static
// text) and a hard one (handheld camera footage of a city) with
// web-hls-auto and web-hls, steering by SSIM (no VMAF) and by VMAF: each
// kept rung reaches its target within the tolerance when measured on its
// own afterwards, and the easy clip's ladder costs far fewer bytes.
func TestPerTitleLadders(t *testing.T) {
	t.Parallel()
	testenv.NeedFFmpeg(t)
	vmafFFmpeg, model := testenv.VMAF(t)
	ctx := context.Background()
	measuring, err := media.DetectVMAF(ctx, vmafFFmpeg, model, "")
	require.NoError(t, err)
	easy, hard := cut(t, "movie-hello.mp4", 3), cut(t, "cityCC0.mpg", 2)
	set := profile.Builtin()
	fixed, _ := set.Get("web-hls")
	auto, _ := set.Get("web-hls-auto")
	for _, tc := range []struct {
		clip, name string
		vmaf       bool
		saves      float64 // at least this share of web-hls's bytes; never more than it
	}{
		{easy, "easy, ssim", false, 0.15},
		{easy, "easy, vmaf", true, 0.15},
		{hard, "hard, vmaf", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tools := media.Tools{}
			metric := profile.MetricSSIM
			if tc.vmaf {
				tools.VMAF, metric = measuring, profile.MetricVMAF
			}
			pl, outs, dir := ladder(t, tools, tc.clip, auto)
			s := pl.Quality.Search
			require.Equal(t, metric, s.Metric)
			tol := auto.Video.Quality.For(metric).Tolerance
			kept := 0
			for _, r := range s.Rungs {
				t.Logf("%s: target %g, CRF %d, predicted %g at %d kb/s (fixed %d kb/s), reached %v %s", r.Name, r.Target, r.CRF, r.Score, r.Bitrate/1000, r.Fixed/1000, r.Reached, r.Dropped)
				if r.Dropped != "" {
					continue
				}
				kept++
				var o media.Output
				for _, x := range outs {
					if x.Name == r.Name {
						o = x
					}
				}
				require.NotEmpty(t, o.Path, r.Name)
				ssim, vmaf := independent(t, map[bool]string{true: vmafFFmpeg}[tc.vmaf], model, tc.clip, filepath.Join(dir, o.Path))
				got := ssim
				if tc.vmaf {
					got = vmaf
				}
				bar := r.Target
				if !r.Reached {
					bar = r.Score
				}
				t.Logf("%s: measured on its own: SSIM %.4f, VMAF %.2f (bar %g, tolerance %g, capped %v)", r.Name, ssim, vmaf, bar, tol, r.Capped)
				if r.Capped {
					// Encoded as web-hls encodes it: what its cap allows.
					require.Zero(t, pl.Rungs[kept-1].CRF, "%s: at the fixed ladder's bitrate", r.Name)
					continue
				}
				require.GreaterOrEqual(t, got, bar-2*tol, "%s measured on its own, over every frame", r.Name)
			}
			require.NotZero(t, kept)
			_, _, fixedDir := ladder(t, media.Tools{}, tc.clip, fixed)
			a, f := videoBytes(t, dir), videoBytes(t, fixedDir)
			t.Logf("video bytes: web-hls-auto %d, web-hls %d (%.0f%% fewer)", a, f, 100*(1-float64(a)/float64(f)))
			require.LessOrEqual(t, float64(a), (1-tc.saves)*float64(f)*1.02, "never more than web-hls (2 %% for the muxers' own bytes)")
		})
	}
}

// TestQualityGate: a search that promised more than the encode gives (a
// worker's report can be wrong) is caught by the gate over the verified
// outputs, with the number measured; the rung is re-encoded once at a
// stricter CRF, and no more.
func TestQualityGate(t *testing.T) {
	t.Parallel()
	testenv.NeedFFmpeg(t)
	ctx := context.Background()
	tools := media.Tools{}
	input := cut(t, "cityCC0.mpg", 2)
	p, err := profile.Parse([]byte("name: t\nversion: 1\nformat: mp4\nvideo: {codec: h264, preset: veryfast, quality: {metric: ssim, target: 0.97}}\naudio: {codec: none}\n"))
	require.NoError(t, err)
	info, err := tools.Admit(ctx, input, media.Limits{})
	require.NoError(t, err)
	pl, err := media.NewPlan(info, p)
	require.NoError(t, err)
	// CRF 42 of camera footage is far below SSIM 0.97; the report says it reaches 0.99.
	require.NoError(t, pl.ApplySearch(media.Search{Metric: profile.MetricSSIM, Samples: [][2]float64{{0, 2}},
		Rungs: []media.RungSearch{{Name: pl.Rungs[0].Name, Probes: []media.Probe{{CRF: 42, Bitrate: 50_000, Score: 0.99}}}}}))
	gate := func() []*media.OutputError {
		out := t.TempDir()
		_, err = tools.Encode(ctx, pl, input, out, nil)
		require.NoError(t, err)
		outs, _, err := tools.Verify(ctx, pl, input, out)
		require.NoError(t, err, "verification itself passes: the gate is the plan's")
		below, err := pl.Gate(outs)
		require.NoError(t, err)
		return below
	}
	below := gate()
	require.Len(t, below, 1)
	require.Equal(t, media.CodeQualityTarget, below[0].Code)
	require.Regexp(t, `SSIM 0\.[0-9]{4} is below its target of 0\.9700, by more than the tolerance of 0\.003 \(CRF 42, predicted 0\.9900\)`, below[0].Problem)
	t.Log(below[0].Error())
	require.True(t, pl.Reencode(below))
	require.Equal(t, 42-media.ReencodeStep, pl.Video.CRF)
	require.Contains(t, pl.Quality.Search.Rungs[0].Reencoded, "encoded again at CRF 39")
	below = gate()
	require.Len(t, below, 1, "CRF 39 is still far from 0.97")
	require.Regexp(t, `\(CRF 39, predicted 0\.9900\)`, below[0].Problem)
	require.False(t, pl.Reencode(below), "once only")
}
