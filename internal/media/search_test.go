package media

import (
	"context"
	"math"
	"os"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/testenv"
)

// curve is a recorded rung: its score and bitrate at each CRF, as probes
// of x264 on a camera clip measured them (VMAF, kb/s), between which the
// search interpolates.
type curve map[int]Probe

func (c curve) at(crf int) Probe {
	if p, ok := c[crf]; ok {
		return p
	}
	// Between the recorded points: linear in score, log-linear in bitrate.
	lo, hi := 0, 100
	for k := range c {
		if k <= crf && k > lo {
			lo = k
		}
		if k >= crf && k < hi {
			hi = k
		}
	}
	a, b := c[lo], c[hi]
	f := float64(crf-lo) / float64(hi-lo)
	return Probe{CRF: crf, Score: math.Round((a.Score+f*(b.Score-a.Score))*1000) / 1000,
		Bitrate: int64(float64(a.Bitrate) * math.Pow(float64(b.Bitrate)/float64(a.Bitrate), f))}
}

// search runs NextCRF against a curve as the search task does.
func (c curve) search(s crfScale, target, close float64, minRate int64) []Probe {
	var probes []Probe
	for {
		crf, ok := NextCRF(s, probes, target, close, minRate)
		if !ok {
			return probes
		}
		probes = append(probes, c.at(crf))
	}
}

// city is cityCC0.mpg at 404p (measured with x264 veryfast, VMAF at the
// source's size).
var city = curve{
	14: {14, 6_000_000, 99.0}, 18: {18, 2_986_000, 98.0}, 24: {24, 990_000, 91.6},
	30: {30, 357_000, 76.9}, 36: {36, 144_000, 54.7}, 42: {42, 60_000, 30.0},
}

func TestNextCRF(t *testing.T) {
	x264 := crfScaleOf("libx264")
	for _, tc := range []struct {
		name    string
		target  float64
		minRate int64
		wantCRF int // chosen
		reached bool
		most    int // probes at most
	}{
		{"the target between two recorded points", 93, 0, 22, true, 4},
		{"a low target", 70, 0, 31, true, 5},
		{"a target the cap never reaches", 99.5, 0, 14, false, 5},
		{"a target reached at the top of the scale", 20, 0, 42, true, 4},
		{"a least bitrate binds", 70, 1_000_000, 23, true, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probes := city.search(x264, tc.target, 0.5, tc.minRate)
			require.LessOrEqual(t, len(probes), tc.most)
			require.LessOrEqual(t, len(probes), MaxProbes)
			p, reached := chooseProbe(probes, tc.target, 0.5, tc.minRate)
			require.Equal(t, tc.wantCRF, p.CRF, "probes %v", probes)
			require.Equal(t, tc.reached, reached)
			if reached {
				// The highest CRF that reaches it: the next one up does not.
				up := city.at(p.CRF + 1)
				require.True(t, p.CRF == x264.hi || up.Score < tc.target || up.Bitrate < tc.minRate, "CRF %d reaches it too", p.CRF+1)
			}
		})
	}
	// Stopping rules.
	_, ok := NextCRF(x264, []Probe{{24, 900_000, 93.2}}, 93, 0.5, 0)
	require.False(t, ok, "within half a point above the target: done")
	crf, ok := NextCRF(x264, []Probe{{24, 900_000, 95}}, 93, 0.5, 0)
	require.True(t, ok)
	require.Equal(t, 30, crf, "all good: one step up")
	crf, ok = NextCRF(x264, []Probe{{24, 900_000, 95}, {30, 300_000, 85}}, 93, 0.5, 0)
	require.True(t, ok)
	require.Equal(t, 25, crf, "interpolated between the two: 24 + 2/10 of 6, at least one above")
	_, ok = NextCRF(x264, []Probe{{24, 900_000, 95}, {25, 800_000, 92}}, 93, 0.5, 0)
	require.False(t, ok, "a bracket one CRF wide: done")
	_, ok = NextCRF(x264, []Probe{{14, 9_000_000, 80}}, 93, 0.5, 0)
	require.False(t, ok, "bad at the bottom of the scale: done")
	crf, ok = NextCRF(x264, []Probe{{24, 100_000, 52}}, 80, 1, 0)
	require.True(t, ok)
	require.Equal(t, 14, crf, "far below at the start: the bottom of the scale says whether any CRF reaches it")
	crf, ok = NextCRF(x264, []Probe{{24, 900_000, 80}, {18, 2_000_000, 86}}, 93, 0.5, 0)
	require.True(t, ok)
	require.Equal(t, 14, crf, "extrapolated down from the two (to 11), and never under the scale")
	crf, ok = NextCRF(x264, []Probe{{30, 900_000, 80}, {28, 1_000_000, 82}}, 93, 0.5, 0)
	require.True(t, ok)
	require.Equal(t, 17, crf, "on the line through the two: a point a CRF, 11 below")
	crf, ok = NextCRF(x264, []Probe{{30, 900_000, 80}, {29, 1_000_000, 80.5}}, 93, 0.5, 0)
	require.True(t, ok)
	require.Equal(t, 29-12, crf, "the line says 25 below: at most twice the step")
	five := []Probe{{24, 1, 1}, {25, 1, 1}, {26, 1, 1}, {27, 1, 1}, {28, 1, 1}}
	_, ok = NextCRF(x264, five, 93, 0.5, 0)
	require.False(t, ok, "at most MaxProbes")
}

func TestApplySearch(t *testing.T) {
	pl := &Plan{Format: profile.FormatHLS, Duration: 10, FPS: 25, Video: VideoPlan{Encoder: "libx264"},
		Quality: &QualityPlan{Target: profile.Target{Metric: profile.MetricVMAF, Target: 93, Fallback: 0.98, Step: 8, Tolerance: 1, DropWithin: 0.15}},
		Rungs: []RungPlan{
			{Name: "720p", Height: 720, Bitrate: 2_800_000, MaxRate: 2_800_000, BufSize: 5_600_000, Target: 93, FallbackTarget: 0.98},
			{Name: "540p", Height: 540, Bitrate: 1_600_000, MaxRate: 1_600_000, BufSize: 3_200_000, Target: 89.7, FallbackTarget: 0.976},
			{Name: "360p", Height: 360, Bitrate: 800_000, MaxRate: 800_000, BufSize: 1_600_000, Target: 85, FallbackTarget: 0.97},
		}}
	report := Search{Metric: profile.MetricVMAF, Samples: [][2]float64{{4, 6}}, Rungs: []RungSearch{
		{Name: "720p", Probes: []Probe{{24, 1_000_000, 94}, {30, 400_000, 90}, {26, 700_000, 93.1}}, CRF: 14, Reached: true},
		{Name: "540p", Probes: []Probe{{26, 650_000, 90}, {32, 250_000, 85}}},
		{Name: "360p", Probes: []Probe{{26, 300_000, 86}, {30, 150_000, 80}}},
	}}
	bad := report
	bad.Rungs = append([]RungSearch(nil), report.Rungs...)
	bad.Rungs[1].Probes = []Probe{{60, 1, 1}}
	require.ErrorContains(t, pl.ApplySearch(bad), "search.rungs[1].probes[0].crf")
	wrong := report
	wrong.Metric = "psnr"
	require.ErrorContains(t, pl.ApplySearch(wrong), "search.metric")

	require.NoError(t, pl.ApplySearch(report))
	s := pl.Quality.Search
	require.Equal(t, 26, s.Rungs[0].CRF, "the worker's own choice is not taken")
	require.True(t, s.Rungs[0].Reached)
	require.Equal(t, int64(2_800_000), s.Rungs[0].Fixed)
	require.Equal(t, 26, s.Rungs[1].CRF)
	// 540p at 650 kb/s is within 15 % of 720p's 700: dropped; 360p is
	// then measured against 720p.
	require.Contains(t, s.Rungs[1].Dropped, "within 15% of the rung above")
	require.Len(t, pl.Rungs, 2)
	require.Equal(t, "720p", pl.Rungs[0].Name)
	require.Equal(t, 26, pl.Rungs[0].CRF)
	require.Equal(t, int64(700_000), pl.Rungs[0].Bitrate, "the predicted bitrate")
	require.Equal(t, int64(2_800_000), pl.Rungs[0].MaxRate, "capped at the fixed ladder's")
	require.Equal(t, "360p", pl.Rungs[1].Name)
	require.Equal(t, 26, pl.Rungs[1].CRF)
	require.NoError(t, pl.validateQuality())
	args := pl.videoCodecArgs()
	require.Subset(t, args, []string{"-crf:v:0", "26", "-maxrate:v:0", "2800000", "-crf:v:1"})
	require.NotContains(t, args, "-b:v:0")
	require.ErrorContains(t, pl.ApplySearch(report), "searched already")
}

func TestSearchSamples(t *testing.T) {
	for _, tc := range []struct {
		duration float64
		want     [][2]float64
	}{
		{1.5, [][2]float64{{0, 1.5}}},
		{3, [][2]float64{{0.5, 2.5}}},
		{60, [][2]float64{{29, 31}}},
		{200, [][2]float64{{32.333333, 34.333333}, {99, 101}, {165.666667, 167.666667}}},
		{7200, [][2]float64{{898, 902}, {2698, 2702}, {4498, 4502}, {6298, 6302}}},
	} {
		require.Equal(t, tc.want, (&Plan{Duration: tc.duration}).SearchSamples(), "%g s", tc.duration)
	}
}

// TestSearchFindsTheTarget runs a real search on a small clip with each
// metric, and measures the chosen setting independently afterwards.
func TestSearchFindsTheTarget(t *testing.T) {
	t.Parallel()
	tools := needFFmpeg(t)
	ctx := context.Background()
	input := clip(t, "in.mp4", "320x180", "3")
	for _, tc := range []struct {
		metric string
		target float64
		slack  float64
		format string // the profile's, with its codec
	}{
		{profile.MetricSSIM, 0.97, 0.01, "mp4\nvideo: {codec: h264"},
		{profile.MetricVMAF, 90, 3, "mp4\nvideo: {codec: h264"},
		{profile.MetricSSIM, 0.97, 0.01, "mkv\nvideo: {codec: hevc"}, // archive-hevc's kind: x265's scale
	} {
		t.Run(tc.metric+" "+tc.format[:3], func(t *testing.T) {
			tools := tools
			if tc.metric == profile.MetricVMAF {
				ffmpeg, model := testenv.VMAF(t)
				v, err := DetectVMAF(ctx, ffmpeg, model, "")
				require.NoError(t, err)
				tools.VMAF = v
			}
			p, err := profile.Parse([]byte("name: t\nversion: 1\nformat: " + tc.format + ", preset: veryfast, quality: {metric: " + tc.metric + ", target: " + ftoa(tc.target) + "}}\naudio: {codec: none}\n"))
			require.NoError(t, err)
			pl := admitted(t, input, p)
			require.False(t, pl.Searched())
			dir := t.TempDir()
			s, ran, err := tools.Search(ctx, pl, input, dir, pl.SearchMetric(tools.VMAF), nil)
			require.NoError(t, err)
			require.NotEmpty(t, ran)
			require.Len(t, s.Rungs, 1)
			require.NotEmpty(t, s.Rungs[0].Probes)
			require.LessOrEqual(t, len(s.Rungs[0].Probes), MaxProbes)
			require.NoError(t, pl.ApplySearch(*s))
			require.NoError(t, pl.Validate())
			rs := pl.Quality.Search.Rungs[0]
			t.Logf("%s: probes %+v, chose CRF %d (%g at %d b/s)", tc.metric, rs.Probes, rs.CRF, rs.Score, rs.Bitrate)
			require.True(t, rs.Reached, "probes %+v", rs.Probes)
			require.GreaterOrEqual(t, rs.Score, tc.target)
			require.Equal(t, rs.CRF, pl.Video.CRF)
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			require.Len(t, entries, 1, "only the samples' reference is left; every probe is removed")

			// The final encode at the chosen CRF, measured as verification measures it.
			out := t.TempDir()
			_, err = tools.Encode(ctx, pl, input, out, nil)
			require.NoError(t, err)
			outs, _, err := tools.Verify(ctx, pl, input, out)
			require.NoError(t, err)
			got := outs[0].SSIM
			if tc.metric == profile.MetricVMAF {
				require.NotNil(t, outs[0].VMAF)
				got = outs[0].VMAF.Mean
			}
			require.InDelta(t, tc.target, got, tc.slack+math.Max(0, got-tc.target), "measured on its own: at the target, within the search's slack")
			require.GreaterOrEqual(t, got, tc.target-tc.slack)
			t.Logf("%s: verified %g", tc.metric, got)
		})
	}
}

// The search's argv: the samples decoded through the encode's filters
// into one lossless reference, each from an input seeked to it; a probe
// encodes the reference as the final encode encodes the rung.
func TestSearchArgs(t *testing.T) {
	pl := &Plan{Format: profile.FormatHLS, Demuxer: "mov", Duration: 200, Start: 1.5, FPS: 25, FPSFilter: true, GOP: 100, SegmentSeconds: 4,
		Width: 1280, Height: 720, VideoIndex: 0, Deinterlace: true,
		Video: VideoPlan{Codec: "h264", Encoder: "libx264", Preset: "veryfast", PixFmt: "yuv420p"},
		Rungs: []RungPlan{{Name: "720p", Width: 1280, Height: 720, MaxRate: 2_800_000, BufSize: 2_800_000}, {Name: "360p", Width: 640, Height: 360, MaxRate: 800_000, BufSize: 800_000}}}
	samples := pl.SearchSamples()
	require.Len(t, samples, 3)
	args := pl.SampleArgs("/in/src.mp4", samples, "/tmp/ref.mkv")
	require.Subset(t, args, []string{"-ss", "32.333333", "-t", "2", "-f", "mov", "-i", "file:/in/src.mp4", "-c:v", "rawvideo", "file:/tmp/ref.mkv"})
	// 6 s of 720p at 25 fps is 207 MB of raw frames, read at no cost; 16 s
	// of 1080p (a long title's samples) would be 1.2 GB: FFV1.
	long := *pl
	long.Duration, long.Width, long.Height = 7200, 1920, 1080
	require.Equal(t, "ffv1", long.referenceCodec(long.SearchSamples()))
	ten := *pl
	ten.Video.PixFmt, ten.Width, ten.Height = "yuv420p10le", 1920, 1080
	require.Equal(t, "ffv1", ten.referenceCodec([][2]float64{{0, 1}}), "10-bit: Matroska keeps no such raw frames")
	g := args[slices.Index(args, "-filter_complex")+1]
	require.Contains(t, g, "[0:0]setpts=PTS-STARTPTS,bwdif=mode=send_frame:parity=auto:deint=all,fps=25:start_time=0,scale=1280:720:flags=bicubic,setsar=1,format=yuv420p[s0];")
	require.Contains(t, g, "[s0][s1][s2]concat=n=3:v=1:a=0,setpts=N/(25)/TB[ref]")
	probe := pl.ProbeArgs("/tmp/ref.mkv", 1, 27, "/tmp/p.mkv")
	require.Subset(t, probe, []string{"-f", "matroska", "-i", "file:/tmp/ref.mkv", "-vf", "scale=640:360,setsar=1,format=yuv420p",
		"-c:v", "libx264", "-preset:v", "veryfast", "-crf", "27", "-maxrate", "800000", "-bufsize", "800000", "-g", "100", "-keyint_min", "100", "-sc_threshold", "0", "file:/tmp/p.mkv"})
}

// The least bitrate: a target reached only under it gets the most bits
// probed, and does not count as reached.
func TestChooseProbeUnderTheLeastBitrate(t *testing.T) {
	p, reached := chooseProbe([]Probe{{24, 200_000, 0.99}, {14, 600_000, 0.992}}, 0.95, 0.003, 2_000_000)
	require.Equal(t, 14, p.CRF)
	require.False(t, reached)
	p, reached = chooseProbe([]Probe{{24, 200_000, 0.90}, {20, 300_000, 0.905}, {14, 600_000, 0.906}}, 0.95, 0.003, 0)
	require.Equal(t, 20, p.CRF, "out of reach: the highest CRF within the slack of the best probed")
	require.False(t, reached)
}

// A searched hls ladder, for the gate's tests: 720p at CRF 26, 360p at 28.
func gatedPlan(t *testing.T) *Plan {
	t.Helper()
	pl := &Plan{Format: profile.FormatHLS, Duration: 10, FPS: 25, Video: VideoPlan{Encoder: "libx264"},
		Quality: &QualityPlan{Target: profile.Target{Metric: profile.MetricVMAF, Target: 93, Fallback: 0.98, Step: 8, Tolerance: 1, DropWithin: 0.15}},
		Rungs: []RungPlan{
			{Name: "720p", Width: 1280, Height: 720, Bitrate: 2_800_000, MaxRate: 2_000_000, BufSize: 2_000_000, Target: 93, FallbackTarget: 0.98},
			{Name: "360p", Width: 640, Height: 360, Bitrate: 800_000, MaxRate: 800_000, BufSize: 800_000, Target: 85, FallbackTarget: 0.97},
		}}
	require.NoError(t, pl.ApplySearch(Search{Metric: profile.MetricVMAF, Samples: [][2]float64{{4, 6}}, Rungs: []RungSearch{
		{Name: "720p", Probes: []Probe{{26, 1_900_000, 94}}},
		{Name: "360p", Probes: []Probe{{28, 300_000, 86}}},
	}}))
	return pl
}

func TestGateAndReencode(t *testing.T) {
	pl := gatedPlan(t)
	s := pl.Quality.Search
	require.True(t, s.Rungs[0].Capped, "1.9 of a 2 Mb/s cap")
	require.Equal(t, 26, pl.Rungs[0].CRF, "capped under max_bitrate, not the fixed ladder's: constant quality under its cap")
	require.Equal(t, int64(2_000_000), pl.Rungs[0].MaxRate)
	out := func(name string, w int, v float64) Output {
		return Output{Name: name, Kind: "hls", Path: "media_" + name + ".m3u8", Width: w, Codec: "h264", VMAF: &VMAFScore{Mean: v}}
	}
	below, err := pl.Gate([]Output{out("720p", 1280, 80), out("360p", 640, 80), out("360p", 640, 80),
		{Name: "poster", Kind: "poster", Path: "poster.jpg", Width: 640, Codec: "mjpeg"}})
	require.NoError(t, err)
	require.Len(t, below, 1, "the capped 720p is as good as its cap allows; 360p once, though listed twice")
	require.Equal(t, "360p", below[0].Rung)
	_, err = pl.Gate([]Output{{Name: "360p", Kind: "hls", Path: "media_1.m3u8", Width: 640, Codec: "h264"}})
	require.ErrorContains(t, err, "VMAF was not measured", "the worker's doing: an error to retry, not a verdict")
	require.True(t, pl.Reencode(append(below, below...)))
	require.Equal(t, 25, pl.Rungs[1].CRF, "lowered once, however often it is listed")
	require.False(t, pl.Reencode(below), "once")

	pl = gatedPlan(t)
	require.False(t, pl.Reencode([]*OutputError{{Rung: "360p"}, {Rung: "1080p"}}), "a rung the plan does not have")
	require.Equal(t, 28, pl.Rungs[1].CRF, "nothing changed")

	name, ok := pl.RungOf(out("360p", 640, 1))
	require.True(t, ok)
	require.Equal(t, "360p", name)
	_, ok = pl.RungOf(Output{Name: "audio", Kind: "hls", Path: "media_2.m3u8"})
	require.False(t, ok)
	file := &Plan{Format: profile.FormatMP4, Rungs: []RungPlan{{Name: "1080p"}}}
	name, ok = file.RungOf(Output{Name: "video", Kind: "mp4", Path: "video.mp4", Width: 1920})
	require.True(t, ok)
	require.Equal(t, "1080p", name)
}

// A rung its size keeps from its target (a small rung of a large screen
// recording: its best at the bottom of the CRF scale is far under it)
// aims the profile's headroom under that best instead, and the gate holds
// it there; a rung its cap keeps from its target does not.
func TestSizeBoundRungs(t *testing.T) {
	pl := &Plan{Format: profile.FormatHLS, Duration: 60, FPS: 30, Width: 1920, Height: 1080, Video: VideoPlan{Encoder: "libx264"},
		Quality: &QualityPlan{Target: profile.Target{Metric: profile.MetricVMAF, Target: 93, Fallback: 0.98, Step: 8, Tolerance: 1, DropWithin: 0.15}},
		Rungs: []RungPlan{
			{Name: "1080p", Width: 1920, Height: 1080, Bitrate: 5_000_000, MaxRate: 5_000_000, BufSize: 5_000_000, Target: 93, FallbackTarget: 0.98},
			{Name: "540p", Width: 960, Height: 540, Bitrate: 1_600_000, MaxRate: 1_600_000, BufSize: 1_600_000, Target: 85, FallbackTarget: 0.97},
			{Name: "360p", Width: 640, Height: 360, Bitrate: 800_000, MaxRate: 800_000, BufSize: 800_000, Target: 80.3, FallbackTarget: 0.964},
		}}
	// Probes of the bench's 60 s 1080p screen recording (VMAF at 1080p).
	screen540 := curve{14: {14, 241_000, 80.53}, 21: {21, 130_000, 77.4}, 27: {27, 70_000, 73.69}, 42: {42, 12_000, 51}}
	// A hard clip whose 360p rung reaches its cap first.
	capped360 := curve{14: {14, 790_000, 79}, 24: {24, 700_000, 76}, 42: {42, 100_000, 50}}
	run := func(i int, c curve) RungSearch {
		rs, err := pl.searchRung(i, profile.MetricVMAF, 27, func(crf int) (Probe, error) { return c.at(crf), nil })
		require.NoError(t, err)
		return rs
	}

	size := run(1, screen540)
	require.Equal(t, []int{27, 14, 22}, crfs(size.Probes), "far below: the bottom, which says its size bounds it; then between the two")
	goal, bound := pl.rungGoal(1, profile.MetricVMAF, size.Probes)
	require.InDelta(t, 76.06, goal, 1e-9, "its best is 4.47 under its target: as far under its best (not 7: no jump as the best nears the target)")
	require.InDelta(t, 80.53, bound, 1e-9)
	goal, _ = pl.rungGoal(1, profile.MetricVMAF, []Probe{{14, 100_000, 60}})
	require.Equal(t, 53.0, goal, "far under its target: 7 under its best")
	goal, bound = pl.rungGoal(0, profile.MetricVMAF, []Probe{{27, 1_000_000, 80}, {14, 2_000_000, 90}})
	require.Equal(t, 93.0, goal, "at the source's size a missed target is the content's doing, not the size's")
	require.Zero(t, bound)
	goal, _ = pl.rungGoal(1, profile.MetricVMAF, []Probe{{14, 1_000_000, 60}})
	require.Equal(t, 85.0, goal, "over half its cap at the bottom: the cap may be what binds")
	goal, bound = pl.rungGoal(1, profile.MetricVMAF, size.Probes[:1])
	require.Equal(t, 85.0, goal, "the bottom not probed yet: its own target")
	require.Zero(t, bound)
	ssim, bound := pl.rungGoal(1, profile.MetricSSIM, []Probe{{14, 100_000, 0.93}})
	require.InDelta(t, 0.91, ssim, 1e-9, "SSIM: the fallback's headroom, 1 - 0.98")
	require.Equal(t, 0.93, bound)

	capped := run(2, capped360)
	goal, bound = pl.rungGoal(2, profile.MetricVMAF, capped.Probes)
	require.Equal(t, 80.3, goal, "its cap, not its size, keeps it under: its own target stands")
	require.Zero(t, bound)

	require.NoError(t, pl.ApplySearch(Search{Metric: profile.MetricVMAF, Samples: [][2]float64{{29, 31}}, Rungs: []RungSearch{
		{Name: "1080p", Probes: []Probe{{27, 169_000, 93.24}}}, size, capped,
	}}))
	s := pl.Quality.Search.Rungs
	require.Equal(t, 22, s[1].CRF, "not CRF 14's 241 kb/s: the bits would buy little its size lets it show")
	require.True(t, s[1].Reached)
	require.InDelta(t, 76.06, s[1].Target, 1e-9)
	require.Equal(t, 80.53, s[1].Bound)
	require.Equal(t, 85.0, s[1].Wanted)
	require.Zero(t, s[2].Bound)
	require.True(t, s[2].Capped)

	out := Output{Name: "540p", Kind: "hls", Path: "media_1.m3u8", Width: 960, Codec: "h264", VMAF: &VMAFScore{Mean: 75.1}}
	below, err := pl.Gate([]Output{out})
	require.NoError(t, err)
	require.Empty(t, below, "within the tolerance of 76.06")
	out.VMAF.Mean = 70
	below, err = pl.Gate([]Output{out})
	require.NoError(t, err)
	require.Len(t, below, 1)
	require.Contains(t, below[0].Problem, "VMAF 70.0 is below its target of 76.1 (the best its size reached, 80.5, less 4.5: its own, 85.0, is out of reach at this size)")
}

func crfs(probes []Probe) []int {
	out := make([]int, len(probes))
	for i, p := range probes {
		out[i] = p.CRF
	}
	return out
}
