package media

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/herdhq/herd/internal/profile"
)

// Per-title encoding. A profile with a quality target (video.quality)
// leaves each rung's setting to a search, run as the job's search task
// after the probe: a few stretches of the source (samples) are decoded
// once, through the encode's own filters, into a lossless reference; each
// rung's encoder then encodes that reference at a few CRFs, under the
// rung's VBV cap, and each probe is measured against it (VMAF, or SSIM).
// The CRF is found by interpolation between the probes (ab-av1 style), at
// most MaxProbes a rung. From the probes, ApplySearch picks each rung's
// CRF (the highest that reaches its target), drops a rung whose bitrate
// would land within a set fraction of the rung above it, and writes that
// into the plan, which the encode then follows.

// QualityPlan is a per-title plan's target and, once its search task
// ran, what the search found.
type QualityPlan struct {
	Target profile.Target `json:"target"`
	Search *Search        `json:"search,omitempty"`
	// Reencoded says the quality gate had rungs below their bar
	// re-encoded once, at a stricter CRF (Reencode).
	Reencoded bool `json:"reencoded,omitempty"`
}

// Search is what a search task found: the probes of every rung (a worker's
// report), and the choices ApplySearch made from them.
type Search struct {
	// Metric is what the probes measured: the target's, or ssim where the
	// search's worker could not measure VMAF (the target's fallback).
	Metric string `json:"metric"`
	// Samples are the stretches of the source probed, in output seconds.
	Samples [][2]float64 `json:"samples"`
	// Rungs are the plan's rungs as the search found them, tallest first;
	// a dropped rung stays here with why.
	Rungs []RungSearch `json:"rungs"`
}

// RungSearch is one rung's probes and the setting chosen from them.
type RungSearch struct {
	Name   string  `json:"name"`
	Probes []Probe `json:"probes"`

	// What ApplySearch chose (a worker's report carries none of it).
	// Target is what the rung aimed at (rungGoal): its own target, or,
	// where its size bounds it, the best it scored less the headroom.
	Target float64 `json:"target,omitempty"`
	// Bound is the best the rung scored, where its size, not its bits,
	// keeps it below its own target (Wanted): see rungGoal. 0: its own
	// target stands.
	Bound   float64 `json:"bound,omitempty"`
	Wanted  float64 `json:"wanted,omitempty"`
	CRF     int     `json:"crf,omitempty"`
	Score   float64 `json:"score,omitempty"`   // the chosen probe's: the quality predicted
	Bitrate int64   `json:"bitrate,omitempty"` // the chosen probe's, bits per second
	Reached bool    `json:"reached,omitempty"` // the chosen probe reached the target
	// Capped says the chosen probe spent about the rung's cap or more: the
	// cap binds, and the rung gets no more than the cap allows, whatever
	// the CRF. An hls rung is then encoded at the fixed ladder's bitrate,
	// as web-hls encodes it; the quality gate does not hold a capped rung
	// to the prediction.
	Capped bool `json:"capped,omitempty"`
	// Fixed is the bitrate the profile's fixed ladder gives the rung (its
	// cap): what the ladder would spend without the search.
	Fixed int64 `json:"fixed,omitempty"`
	// Dropped says why the rung was left out of the ladder; "": kept.
	Dropped string `json:"dropped,omitempty"`
	// Reencoded says what the quality gate measured of the rung and the
	// stricter CRF it was encoded at again (Reencode); "": not.
	Reencoded string `json:"reencoded,omitempty"`
}

// Spend is what the ladder the search chose spends against the fixed
// one, in bits per second: chosen sums the kept rungs' predicted
// bitrates, fixed every rung's fixed one (0 for an mp4 or mkv plan).
func (s *Search) Spend() (chosen, fixed int64) {
	for _, r := range s.Rungs {
		fixed += r.Fixed
		if r.Dropped == "" {
			chosen += r.Bitrate
		}
	}
	return chosen, fixed
}

// Probe is one probe encode of a rung's samples.
type Probe struct {
	CRF     int     `json:"crf"`
	Bitrate int64   `json:"bitrate"` // bits per second over the samples
	Score   float64 `json:"score"`   // the search metric's, against the samples
}

// capShare is how near its cap a probe's bitrate is for the cap to bind
// (RungSearch.Capped).
const capShare = 0.9

// probeSubsample is how many frames apart a probe's VMAF scores frames
// (libvmaf's n_subsample: every frame is still read, for its motion
// feature). A probe needs the mean of a few dozen frames, and scoring is
// most of a probe's cost at a large source's size.
const probeSubsample = 4

// farBelow, in units of the stopping distance (the tolerance), is how far
// below its target a rung's first probe scores for the search to try the
// bottom of the scale next.
const farBelow = 5

// MaxProbes bounds the probe encodes of one rung.
const MaxProbes = 5

// crfScale is an encoder's range of CRF the search keeps to, where it
// starts, and its step: about how far the CRF moves to halve the bitrate.
type crfScale struct{ lo, hi, start, step int }

// crfScaleOf is the search's scale for a software encoder.
func crfScaleOf(encoder string) crfScale {
	switch encoder {
	case "libx265":
		return crfScale{lo: 14, hi: 42, start: 26, step: 6}
	case "libsvtav1":
		return crfScale{lo: 16, hi: 58, start: 35, step: 8}
	}
	return crfScale{lo: 14, hi: 42, start: 24, step: 6}
}

// planQuality gives a plan the profile's target: each rung's own target
// (and its SSIM fallback's), its VBV cap and its least bitrate.
func (pl *Plan) planQuality(p *profile.Profile) {
	t := p.Video.Quality
	if t == nil {
		return
	}
	pl.Quality = &QualityPlan{Target: *t}
	top := pl.Rungs[0]
	topArea := float64(top.Width * top.Height)
	source := min(pl.Width, pl.Height)
	// The profile's rungs by height, for their own targets and bounds.
	own := map[int]*profile.RungQuality{}
	for _, r := range p.Video.Rungs {
		own[evenDown(float64(r.Height))] = r.Quality
	}
	fallback := t.For(profile.MetricSSIM)
	for i := range pl.Rungs {
		r := &pl.Rungs[i]
		short := min(r.Width, r.Height)
		area := float64(r.Width*r.Height) / topArea
		r.Target = t.RungTarget(source, short)
		if t.Metric == profile.MetricVMAF && fallback != nil {
			r.FallbackTarget = fallback.RungTarget(source, short)
		}
		capRate := int64(float64(t.MaxBitrate) * area)
		r.MinRate = int64(float64(t.MinBitrate) * area)
		if q := own[short]; q != nil {
			r.Target = cmpOr(q.Target, r.Target)
			capRate = cmpOr(int64(q.MaxBitrate), capRate)
			r.MinRate = cmpOr(int64(q.MinBitrate), r.MinRate)
		}
		if pl.Format == profile.FormatHLS && r.Bitrate > 0 {
			// The fixed ladder's bitrate caps the rung: a per-title
			// ladder never spends more than the fixed one would.
			capRate = minPositive(capRate, r.Bitrate)
		}
		// One second of the cap: a title's bitrate stays at or under it
		// (a larger buffer lets a short title's start run over it, since
		// x264 starts with the buffer nearly full).
		r.MaxRate, r.BufSize = capRate, capRate
		if capRate > 0 {
			r.MinRate = min(r.MinRate, capRate)
		}
	}
}

func cmpOr[T int64 | float64](a, b T) T {
	if a != 0 {
		return a
	}
	return b
}

// minPositive is the smaller of a and b that is above 0.
func minPositive(a, b int64) int64 {
	switch {
	case a <= 0:
		return b
	case b <= 0:
		return a
	}
	return min(a, b)
}

// rungGoal is what rung i aims at in metric, given its probes so far:
// its own target (rungTarget), unless the probes show that its size, not
// its bits, keeps it from that: the rung is smaller than the source (its
// target derived for that, or its own), none of its probes reached the
// target, the bottom of the CRF scale was probed, and there the rung
// spent well under its cap (sizeBoundShare of it: a cap that binds is
// another matter, see Capped). A rung measured scaled up to the source's
// size cannot buy back with bits what scaling down lost (240p of a 1080p
// screen recording scores a VMAF of 34 at CRF 14), so it then aims as far
// below the best it scored (bound) as the profile's target is below the
// top of the metric's scale (7 for a target of VMAF 93, 0.02 for SSIM
// 0.98), or, where its best is nearer its target than that, as far below
// its best as its best is below the target: the goal never jumps as the
// best crosses the target. bound is 0 where the rung's own target stands.
func (pl *Plan) rungGoal(i int, metric string, probes []Probe) (goal, bound float64) {
	goal = pl.rungTarget(i, metric)
	t := pl.Quality.Target.For(metric)
	r := pl.Rungs[i]
	if t == nil || len(probes) == 0 || min(r.Width, r.Height) >= min(pl.Width, pl.Height) {
		return goal, 0
	}
	lo := crfScaleOf(pl.RungVideo(i).Encoder).lo
	best, bottom := math.Inf(-1), false
	for _, p := range probes {
		if p.Score >= goal {
			return goal, 0
		}
		best = math.Max(best, p.Score)
		if p.CRF <= lo && (r.MaxRate <= 0 || float64(p.Bitrate) < sizeBoundShare*float64(r.MaxRate)) {
			bottom = true
		}
	}
	if !bottom {
		return goal, 0
	}
	headroom := min(profile.ScaleOf(metric)-t.Target, goal-best)
	return math.Max(math.Round((best-headroom)*1000)/1000, 0), best
}

// sizeBoundShare is the most of its cap a rung's probe at the bottom of
// the CRF scale spends for its size, not its cap, to be what keeps it
// under its target (rungGoal): between it and capShare the VBV cap may
// still clip its hardest frames.
const sizeBoundShare = 0.5

// rungTarget is rung i's target in metric: its own in the target's
// metric, its fallback's in SSIM; 0 when the plan has none in metric.
func (pl *Plan) rungTarget(i int, metric string) float64 {
	r := pl.Rungs[i]
	switch {
	case pl.Quality == nil:
		return 0
	case metric == pl.Quality.Target.Metric:
		return r.Target
	case metric == profile.MetricSSIM:
		return r.FallbackTarget
	}
	return 0
}

// SearchMetric is what a search measures: the target's metric, or SSIM
// where vmaf (the measuring ffmpeg) is nil and the target has a fallback;
// "" when it cannot search at all (a VMAF target and no fallback).
func (pl *Plan) SearchMetric(vmaf *VMAF) string {
	t := pl.Quality.Target
	switch {
	case t.Metric != profile.MetricVMAF || vmaf != nil:
		return t.Metric
	case t.NeedsVMAF():
		return ""
	}
	return profile.MetricSSIM
}

// Searched says the plan needs no search, or had one.
func (pl *Plan) Searched() bool { return pl.Quality == nil || pl.Quality.Search != nil }

// Sample bounds: the samples together are about sampleShare of the
// source, from minSample to maxSample seconds, in at most maxSamples
// stretches of at least sampleWindow seconds each.
const (
	sampleShare  = 0.03
	minSample    = 2.0
	maxSample    = 16.0
	sampleWindow = 2.0
	maxSamples   = 4
)

// SearchSamples are the stretches of the source the search probes, in
// output seconds: spread evenly over it, each centred in its share of the
// source; the whole source when it is short.
func (pl *Plan) SearchSamples() [][2]float64 {
	total := math.Min(math.Max(pl.Duration*sampleShare, minSample), maxSample)
	if total >= pl.Duration {
		return [][2]float64{{0, round6(pl.Duration)}}
	}
	n := min(maxSamples, max(1, int(total/sampleWindow)))
	each := total / float64(n)
	out := make([][2]float64, n)
	for i := range n {
		mid := pl.Duration * (float64(i) + 0.5) / float64(n)
		from := math.Max(0, math.Min(mid-each/2, pl.Duration-each))
		out[i] = [2]float64{round6(from), round6(from + each)}
	}
	return out
}

// referencePlan is the plan the search measures its probes with: the
// samples' lossless reference (SampleArgs) as a source of seconds long,
// already filtered and at the source's display size.
func (pl *Plan) referencePlan(seconds float64) *Plan {
	return &Plan{
		Format: profile.FormatMKV, Demuxer: "matroska", Duration: seconds,
		Width: pl.Width, Height: pl.Height, Aspect: pl.Aspect, FPS: pl.FPS,
		Video: VideoPlan{PixFmt: pl.Video.PixFmt}, Rungs: []RungPlan{{Width: pl.Width, Height: pl.Height}},
	}
}

// rawReferenceMax bounds the size of a search's reference kept as raw
// frames; a larger one is FFV1. Every probe reads the reference twice
// (its encode, its measurement): decoding 2 s of 1080p FFV1 costs about
// a second of CPU each time, a quarter of a probe, and raw frames cost
// nothing to read. 1 GiB holds 11.5 s of 1080p at 30 fps: the samples
// of titles up to about 6 minutes at 1080p, and of any title at 720p.
const rawReferenceMax = 1 << 30

// referenceCodec is the lossless codec of the samples' reference: raw
// frames where they fit in rawReferenceMax and are 8-bit 4:2:0 (Matroska
// keeps 10-bit raw frames only in its VFW mode), else FFV1.
func (pl *Plan) referenceCodec(samples [][2]float64) string {
	var seconds float64
	for _, s := range samples {
		seconds += s[1] - s[0]
	}
	const bytesPerPixel = 1.5 // 4:2:0, 8 bits
	if pl.Video.PixFmt == "yuv420p" && seconds*pl.FPS*float64(pl.Width*pl.Height)*bytesPerPixel <= rawReferenceMax {
		return "rawvideo"
	}
	return "ffv1"
}

// SampleArgs is the argv that decodes the samples (output seconds) of
// input through the encode's filters (deinterlace, tone map, frame rate)
// and writes them, one after another at the source's display size and on
// the output's frame grid, losslessly (raw frames, or FFV1 where they
// would be large: referenceCodec) into ref, a Matroska file: what every
// probe encodes and is measured against. Each sample is read from an
// input of its own seeked to it; a demuxer that seeks late only shortens
// a sample.
func (pl *Plan) SampleArgs(input string, samples [][2]float64, ref string) []string {
	args := []string{"-nostdin", "-hide_banner", "-nostats", "-progress", "pipe:1", "-y", "-protocol_whitelist", "file,pipe"}
	var g strings.Builder
	for i, s := range samples {
		// An input's -ss counts from the file's start, as output time does.
		args = append(args, "-ss", ftoa(s[0]), "-t", ftoa(s[1]-s[0]), "-f", pl.Demuxer, "-i", "file:"+filepath.Clean(input))
		chain := append([]string{"setpts=PTS-STARTPTS"}, pl.preFilters(false)...)
		chain = append(chain, pl.gridFilter(true), fmt.Sprintf("scale=%d:%d:flags=bicubic,setsar=1,format=%s", pl.Width, pl.Height, pl.Video.PixFmt))
		fmt.Fprintf(&g, "[%d:%d]%s[s%d];", i, pl.VideoIndex, strings.Join(chain, ","), i)
	}
	for i := range samples {
		fmt.Fprintf(&g, "[s%d]", i)
	}
	fmt.Fprintf(&g, "concat=n=%d:v=1:a=0,setpts=N/(%s)/TB[ref]", len(samples), fpsArg(pl.FPS))
	return append(args, "-filter_complex", g.String(), "-map", "[ref]", "-an", "-sn", "-dn",
		"-c:v", pl.referenceCodec(samples), "-f", "matroska", "file:"+filepath.Clean(ref))
}

// ProbeArgs is the argv that encodes the samples' reference (SampleArgs)
// as rung i at crf, with the encoder, preset, keyframe interval and VBV
// cap of the final encode, into out (Matroska, video only).
func (pl *Plan) ProbeArgs(ref string, i, crf int, out string) []string {
	r := pl.Rungs[i]
	v := pl.RungVideo(i)
	v.CRF = crf
	args := []string{"-nostdin", "-hide_banner", "-nostats", "-progress", "pipe:1", "-y", "-protocol_whitelist", "file,pipe",
		"-f", "matroska", "-i", "file:" + filepath.Clean(ref), "-map", "0:v:0",
		"-vf", fmt.Sprintf("scale=%d:%d,setsar=1,format=%s", r.Width, r.Height, v.PixFmt)}
	codec, quality := pl.codecArgs(v, "v")
	args = append(append(args, codec...), quality...)
	if r.MaxRate > 0 {
		args = append(args, "-maxrate", strconv.FormatInt(r.MaxRate, 10), "-bufsize", strconv.FormatInt(r.BufSize, 10))
	}
	if pl.GOP > 0 {
		gop := strconv.Itoa(pl.GOP)
		args = append(args, "-g", gop)
		if pl.Format == profile.FormatHLS {
			args = append(args, "-keyint_min", gop, "-sc_threshold", "0")
		}
	}
	return append(args, "-an", "-sn", "-dn", "-f", "matroska", "file:"+filepath.Clean(out))
}

// Search runs a plan's search: it makes the samples' reference in dir,
// then probes every rung (the top one first, the others from its CRF, two
// at a time), measuring metric (SearchMetric). It reports the probes;
// ApplySearch chooses from them.
func (t Tools) Search(ctx context.Context, pl *Plan, input, dir, metric string, progress func(float64)) (*Search, [][]string, error) {
	if pl.Quality == nil {
		return nil, nil, fmt.Errorf("search: the plan has no quality target")
	}
	if metric == profile.MetricVMAF && t.VMAF == nil {
		return nil, nil, fmt.Errorf("search: VMAF is the target and this worker has no ffmpeg that measures it")
	}
	samples := pl.SearchSamples()
	ref := filepath.Join(dir, "reference.mkv")
	var (
		mu  sync.Mutex
		ran [][]string
	)
	record := func(cmds ...[]string) {
		mu.Lock()
		ran = append(ran, cmds...)
		mu.Unlock()
	}
	args := pl.SampleArgs(input, samples, ref)
	record(argv(t.ffmpeg(), args))
	if err := t.Run(ctx, args, nil); err != nil {
		return nil, ran, fmt.Errorf("search: decode the samples: %w", err)
	}
	frames, _, err := t.packets(ctx, ref)
	if err != nil {
		return nil, ran, fmt.Errorf("search: read the samples: %w", err)
	}
	if frames == 0 {
		return nil, ran, fmt.Errorf("search: the samples decoded to no frame")
	}
	seconds := float64(frames) / pl.FPS
	refPlan := pl.referencePlan(seconds)
	s := &Search{Metric: metric, Samples: samples, Rungs: make([]RungSearch, len(pl.Rungs))}
	var done int
	step := func() {
		mu.Lock()
		done++
		if progress != nil {
			progress(math.Min(float64(done)/float64(len(pl.Rungs)*3), 0.99))
		}
		mu.Unlock()
	}
	rung := func(ctx context.Context, i, start int) error {
		rs, err := pl.searchRung(i, metric, start, func(crf int) (Probe, error) {
			p, cmds, err := t.probeEncode(ctx, pl, refPlan, ref, dir, i, crf, metric, seconds)
			record(cmds...)
			step()
			return p, err
		})
		s.Rungs[i] = rs
		return err
	}
	if err := rung(ctx, 0, 0); err != nil {
		return nil, ran, err
	}
	topGoal, _ := pl.rungGoal(0, metric, s.Rungs[0].Probes)
	topCRF, _ := chooseProbe(s.Rungs[0].Probes, topGoal, closeEnough(metric, pl.Quality.Target), pl.Rungs[0].MinRate)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(2)
	for i := 1; i < len(pl.Rungs); i++ {
		g.Go(func() error { return rung(gctx, i, topCRF.CRF) })
	}
	if err := g.Wait(); err != nil {
		return nil, ran, err
	}
	return s, ran, nil
}

// searchRung probes rung i, from start (0: its encoder's own), until
// NextCRF says it is done, each step aiming at what its probes so far say
// it can (rungGoal); probe encodes and measures one CRF.
func (pl *Plan) searchRung(i int, metric string, start int, probe func(crf int) (Probe, error)) (RungSearch, error) {
	rs := RungSearch{Name: pl.Rungs[i].Name}
	scale := crfScaleOf(pl.RungVideo(i).Encoder)
	if start > 0 {
		scale.start = min(max(start, scale.lo), scale.hi)
	}
	for {
		goal, _ := pl.rungGoal(i, metric, rs.Probes)
		crf, ok := NextCRF(scale, rs.Probes, goal, closeEnough(metric, pl.Quality.Target), pl.Rungs[i].MinRate)
		if !ok {
			return rs, nil
		}
		p, err := probe(crf)
		if err != nil {
			return rs, fmt.Errorf("search: probe %s at CRF %d: %w", rs.Name, crf, err)
		}
		rs.Probes = append(rs.Probes, p)
	}
}

// closeEnough is how far above its target a probe may score for the
// search to stop there: the target's tolerance in metric (what the
// quality gate allows below it).
func closeEnough(metric string, t profile.Target) float64 {
	if f := t.For(metric); f != nil {
		return f.Tolerance
	}
	return 0
}

// probeEncode encodes rung i of the samples' reference at crf and measures it.
func (t Tools) probeEncode(ctx context.Context, pl, refPlan *Plan, ref, dir string, i, crf int, metric string, seconds float64) (Probe, [][]string, error) {
	out := filepath.Join(dir, fmt.Sprintf("probe-%d-%d.mkv", i, crf))
	defer os.Remove(out)
	args := pl.ProbeArgs(ref, i, crf, out)
	ran := [][]string{argv(t.ffmpeg(), args)}
	if err := t.Run(ctx, args, nil); err != nil {
		return Probe{}, ran, err
	}
	_, bytes, err := t.packets(ctx, out)
	if err != nil {
		return Probe{}, ran, err
	}
	p := Probe{CRF: crf, Bitrate: int64(math.Round(float64(bytes) * 8 / seconds))}
	switch metric {
	case profile.MetricVMAF:
		// Every probeSubsample-th frame scored: libvmaf's own subsampling
		// keeps its motion feature whole.
		sub := *t.VMAF
		sub.Subsample = probeSubsample
		v, cmds, err := t.MeasureVMAF(ctx, &sub, refPlan, ref, "matroska", out, [][2]float64{{0, seconds}}, false, dir)
		ran = append(ran, cmds...)
		if err != nil {
			return Probe{}, ran, err
		}
		p.Score = v.Mean
	default:
		args := refPlan.QualityArgs(ref, "matroska", []string{out})
		ran = append(ran, argv(t.ffmpeg(), args))
		tail, err := t.exec(ctx, t.ffmpeg(), args, nil, io.Discard, 64<<10)
		if err != nil {
			return Probe{}, ran, fmt.Errorf("measure SSIM: %w", err)
		}
		ssim, _ := parseQuality(tail)
		s, ok := ssim[0]
		if !ok {
			return Probe{}, ran, fmt.Errorf("measure SSIM: ffmpeg printed none")
		}
		p.Score = s
	}
	return p, ran, nil
}

// packets counts a file's video packets and their bytes (ffprobe): the
// encoded stream alone, without the container's overhead.
func (t Tools) packets(ctx context.Context, path string) (n int, size int64, err error) {
	args := []string{"-v", "error", "-hide_banner", "-protocol_whitelist", "file,pipe", "-f", "matroska", "-select_streams", "v:0",
		"-show_entries", "packet=size", "-of", "csv=p=0", "-i", "file:" + path}
	var out bytes.Buffer
	if _, err := t.exec(ctx, t.ffprobe(), args, nil, &out, stderrTailBytes); err != nil {
		return 0, 0, fmt.Errorf("count packets: %w", err)
	}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		f := strings.TrimSuffix(strings.TrimSpace(sc.Text()), ",")
		if f == "" {
			continue
		}
		b, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("count packets: %q is not a size", f)
		}
		n++
		size += b
	}
	return n, size, sc.Err()
}

// NextCRF is the search's next probe for a rung, given its probes so far
// (in any order): the CRF to probe, or false when the search is done.
// A probe is good when it scores at least target and its bitrate is at
// least minRate. The search brackets the highest good CRF: from the start
// CRF it steps by the scale's step (or extrapolates from two probes) until
// one side is good and the other not, then interpolates between the two
// nearest (on the score, or on the log of the bitrate where minRate is
// what binds). It stops when a good probe scores within close of the
// target, when the bracket is one CRF wide, at the scale's ends, on a
// CRF it has probed already, or after MaxProbes.
func NextCRF(s crfScale, probes []Probe, target, close float64, minRate int64) (int, bool) {
	if len(probes) == 0 {
		return s.start, true
	}
	if len(probes) >= MaxProbes {
		return 0, false
	}
	good := func(p Probe) bool { return p.Score >= target && p.Bitrate >= minRate }
	var g, b *Probe // the highest good CRF, the lowest bad one
	for i := range probes {
		p := &probes[i]
		if good(*p) {
			if g == nil || p.CRF > g.CRF {
				g = p
			}
		} else if b == nil || p.CRF < b.CRF {
			b = p
		}
	}
	var next float64
	switch {
	case g != nil && g.Score-target <= close && (b == nil || b.CRF > g.CRF):
		return 0, false // good, and as close as it needs to be
	case g != nil && b != nil && b.CRF > g.CRF:
		if b.CRF-g.CRF <= 1 {
			return 0, false
		}
		next = float64(b.CRF) // the bound that binds first
		if b.Score < target && g.Score > b.Score {
			next = math.Min(next, float64(g.CRF)+(g.Score-target)/(g.Score-b.Score)*float64(b.CRF-g.CRF))
		}
		if b.Bitrate < minRate && g.Bitrate > b.Bitrate && b.Bitrate > 0 {
			next = math.Min(next, float64(g.CRF)+math.Log(float64(g.Bitrate)/float64(minRate))/math.Log(float64(g.Bitrate)/float64(b.Bitrate))*float64(b.CRF-g.CRF))
		}
		next = math.Min(math.Max(math.Round(next), float64(g.CRF+1)), float64(b.CRF-1))
	case g != nil && (b == nil || b.CRF < g.CRF):
		// All good (or a bad one below, which noise made): go up.
		if g.CRF >= s.hi {
			return 0, false
		}
		next = float64(g.CRF + extrapolate(s, probes, g, target, +1))
		next = math.Min(next, float64(s.hi))
	default:
		// All bad: go down.
		if b.CRF <= s.lo {
			return 0, false
		}
		next = float64(b.CRF - extrapolate(s, probes, b, target, -1))
		next = math.Max(next, float64(s.lo))
		if len(probes) == 1 && target-b.Score > farBelow*close {
			// Far below at the start (a small rung scaled up to a large
			// source often cannot get there at all): the bottom of the
			// scale next, which says at once whether any CRF can.
			next = float64(s.lo)
		}
		if b.Bitrate < minRate && b.Score >= target && b.Bitrate > 0 {
			// Only the least bitrate binds: about step CRF per halving.
			need := float64(b.CRF) - float64(s.step)*math.Log2(float64(minRate)/float64(b.Bitrate))
			next = math.Max(math.Min(math.Floor(need), float64(b.CRF-1)), float64(s.lo))
		}
	}
	crf := int(next)
	if slices.ContainsFunc(probes, func(p Probe) bool { return p.CRF == crf }) {
		return 0, false
	}
	return crf, true
}

// extrapolate is how far (at least 1, at most twice the step) to move
// from p in dir (+1 up, -1 down) to reach target on the line through p
// and the nearest other probe; the step when there is no such line.
func extrapolate(s crfScale, probes []Probe, p *Probe, target float64, dir int) int {
	var q *Probe
	for i := range probes {
		o := &probes[i]
		if o.CRF != p.CRF && o.Score != p.Score && (q == nil || abs(o.CRF-p.CRF) < abs(q.CRF-p.CRF)) {
			q = o
		}
	}
	if q == nil {
		return s.step
	}
	slope := (q.Score - p.Score) / float64(q.CRF-p.CRF) // score per CRF, below 0
	if slope >= 0 {
		return s.step
	}
	d := (target - p.Score) / slope * float64(dir)
	return int(math.Min(math.Max(math.Round(d), 1), float64(2*s.step)))
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// chooseProbe is the setting a rung gets from its probes: the good probe
// (see NextCRF) of the highest CRF. When none is good the target is out
// of reach at this size or under this cap: the rung gets the highest CRF
// that scores within slack of the best score probed (more bits would buy
// nothing the metric sees: a small picture scaled up scores no higher).
// reached says the chosen probe scores at least target.
func chooseProbe(probes []Probe, target, slack float64, minRate int64) (Probe, bool) {
	var best *Probe
	for i := range probes {
		p := &probes[i]
		if p.Score >= target && p.Bitrate >= minRate && (best == nil || p.CRF > best.CRF) {
			best = p
		}
	}
	switch {
	case best != nil:
	case slices.ContainsFunc(probes, func(p Probe) bool { return p.Score >= target }):
		// The target is reached, under the least bitrate: the most bits probed.
		for i := range probes {
			if p := &probes[i]; best == nil || p.CRF < best.CRF {
				best = p
			}
		}
	default:
		top := math.Inf(-1)
		for _, p := range probes {
			top = math.Max(top, p.Score)
		}
		for i := range probes {
			p := &probes[i]
			if p.Score >= top-slack && (best == nil || p.CRF > best.CRF) {
				best = p
			}
		}
	}
	if best == nil {
		return Probe{}, false
	}
	return *best, best.Score >= target && best.Bitrate >= minRate
}

// ApplySearch makes the plan follow a search's probes (a worker's report,
// checked here against the plan): each rung gets the CRF chooseProbe
// picks for what it aims at (rungGoal), with its bitrate the one
// predicted; a rung whose bitrate lands within the target's drop_within
// of the kept rung above it is dropped (the top rung never is). The search, with its choices, is recorded on
// the plan.
func (pl *Plan) ApplySearch(s Search) error {
	if pl.Quality == nil {
		return bad("search", "the plan has no quality target")
	}
	if pl.Quality.Search != nil {
		return bad("search", "the plan was searched already")
	}
	if err := pl.checkSearch(&s); err != nil {
		return err
	}
	drop := pl.Quality.Target.DropWithin
	var kept []RungPlan
	above := int64(0)
	for i := range s.Rungs {
		rs := &s.Rungs[i]
		r := pl.Rungs[i]
		rs.Target, rs.Bound = pl.rungGoal(i, s.Metric, rs.Probes)
		if rs.Bound > 0 {
			rs.Wanted = pl.rungTarget(i, s.Metric)
		}
		p, reached := chooseProbe(rs.Probes, rs.Target, closeEnough(s.Metric, pl.Quality.Target), r.MinRate)
		rs.CRF, rs.Score, rs.Bitrate, rs.Reached, rs.Fixed = p.CRF, p.Score, p.Bitrate, reached, r.Bitrate
		rs.Capped = r.MaxRate > 0 && float64(p.Bitrate) >= capShare*float64(r.MaxRate)
		if r.MaxRate > 0 {
			// A sample's VBV buffer starts full; a title's average stays under the cap.
			rs.Bitrate = min(rs.Bitrate, r.MaxRate)
		}
		p.Bitrate = rs.Bitrate
		if pl.Format != profile.FormatHLS {
			rs.Fixed = 0
		}
		switch {
		case i == 0 || above <= 0:
		case rs.Bitrate >= above:
			rs.Dropped = fmt.Sprintf("it would cost as much as the larger rung above or more (%d kb/s against %d kb/s)", rs.Bitrate/1000, above/1000)
		case float64(rs.Bitrate) >= float64(above)*(1-drop):
			rs.Dropped = fmt.Sprintf("its bitrate (%d kb/s) is within %g%% of the rung above (%d kb/s): it would add no step of quality", rs.Bitrate/1000, math.Round(drop*100), above/1000)
		}
		if rs.Dropped != "" {
			continue
		}
		above = rs.Bitrate
		switch {
		case rs.Capped && rs.Fixed > 0 && r.MaxRate == rs.Fixed:
			// The cap binds: the rung is encoded as the fixed ladder
			// encodes it (its bitrate, with the same VBV), which spends
			// what web-hls spends and no more; constant quality under a
			// cap would run over it on a short title.
			r.CRF, r.Bitrate, r.MaxRate, r.BufSize = 0, rs.Fixed, rs.Fixed*107/100, rs.Fixed*3/2
			rs.Bitrate = rs.Fixed
		case pl.Format == profile.FormatHLS:
			r.CRF, r.Bitrate = p.CRF, max(p.Bitrate, 1000)
		default:
			r.CRF = p.CRF
		}
		kept = append(kept, r)
	}
	pl.Rungs = kept
	if pl.Format != profile.FormatHLS {
		pl.Video.CRF = kept[0].CRF
	}
	pl.Quality.Search = &s
	return nil
}

// checkSearch checks a worker's search report against the plan: the
// plan's rungs in order, each with 1 to MaxProbes probes of distinct CRFs
// within its encoder's scale, numbers in range, a metric the plan steers
// by, and samples within the source. It clears what only ApplySearch sets.
func (pl *Plan) checkSearch(s *Search) error {
	switch {
	case s.Metric != pl.Quality.Target.Metric && (s.Metric != profile.MetricSSIM || pl.Quality.Target.For(profile.MetricSSIM) == nil):
		return bad("search.metric", "%q is not what the plan steers by", s.Metric)
	case len(s.Rungs) != len(pl.Rungs):
		return bad("search.rungs", "has %d rungs, the plan %d", len(s.Rungs), len(pl.Rungs))
	case len(s.Samples) < 1 || len(s.Samples) > maxSamples:
		return bad("search.samples", "must be 1 to %d stretches", maxSamples)
	}
	for i, w := range s.Samples {
		if !(w[0] >= 0 && w[1] > w[0] && w[1] <= pl.Duration+1) {
			return bad(fmt.Sprintf("search.samples[%d]", i), "is not a stretch of the source")
		}
	}
	hi := profile.ScaleOf(s.Metric)
	for i := range s.Rungs {
		rs := &s.Rungs[i]
		f := fmt.Sprintf("search.rungs[%d]", i)
		if rs.Name != pl.Rungs[i].Name {
			return bad(f+".name", "%q is not the plan's rung %q", rs.Name, pl.Rungs[i].Name)
		}
		if len(rs.Probes) < 1 || len(rs.Probes) > MaxProbes {
			return bad(f+".probes", "must be 1 to %d", MaxProbes)
		}
		scale := crfScaleOf(pl.RungVideo(i).Encoder)
		seen := map[int]bool{}
		for j, p := range rs.Probes {
			pf := fmt.Sprintf("%s.probes[%d]", f, j)
			switch {
			case p.CRF < scale.lo || p.CRF > scale.hi || seen[p.CRF]:
				return bad(pf+".crf", "must be a CRF from %d to %d probed once", scale.lo, scale.hi)
			case p.Bitrate <= 0 || p.Bitrate > maxBitrate:
				return bad(pf+".bitrate", "out of range")
			case !(p.Score >= 0 && p.Score <= hi):
				return bad(pf+".score", "must be from 0 to %g", hi)
			}
			seen[p.CRF] = true
		}
		*rs = RungSearch{Name: rs.Name, Probes: rs.Probes}
	}
	return nil
}

// validateQuality checks a per-title plan's targets and search.
func (pl *Plan) validateQuality() error {
	if pl.Quality == nil {
		for i, r := range pl.Rungs {
			if r.Target != 0 || r.FallbackTarget != 0 || r.MinRate != 0 || r.CRF != 0 {
				return bad(fmt.Sprintf("plan.rungs[%d]", i), "quality targets need plan.quality")
			}
		}
		return nil
	}
	t := pl.Quality.Target
	hi := 1.0
	if t.Metric == profile.MetricVMAF {
		hi = 100
	} else if t.Metric != profile.MetricSSIM {
		return bad("plan.quality.target.metric", "must be vmaf or ssim")
	}
	if len(pl.Chunks) > 0 && t.NeedsVMAF() {
		return bad("plan.quality", "a VMAF target without a fallback is encoded whole")
	}
	err := first(floatIn("plan.quality.target.target", t.Target, 0, hi), floatIn("plan.quality.target.fallback", t.Fallback, 0, 1),
		floatIn("plan.quality.target.tolerance", t.Tolerance, 0, hi), floatIn("plan.quality.target.drop_within", t.DropWithin, 0, 1))
	if err != nil {
		return err
	}
	for i, r := range pl.Rungs {
		f := fmt.Sprintf("plan.rungs[%d]", i)
		if r.Video != nil {
			return bad(f+".video", "a per-title plan is a ladder of one codec")
		}
		scale := crfScaleOf(pl.RungVideo(i).Encoder)
		if err := first(floatIn(f+".target", r.Target, 0, hi), floatIn(f+".fallback_target", r.FallbackTarget, 0, 1),
			inRange(f+".min_rate", r.MinRate, 0, maxBitrate)); err != nil {
			return err
		}
		if r.CRF != 0 || (pl.Quality.Search != nil && pl.Format != profile.FormatHLS) {
			if err := inRange(f+".crf", r.CRF, scale.lo, scale.hi); err != nil {
				return err
			}
		}
	}
	if s := pl.Quality.Search; s != nil && len(s.Rungs) > maxRungs {
		return bad("plan.quality.search.rungs", "too many")
	}
	return nil
}

// Gate is the quality gate of a per-title plan, over its verified
// outputs: each rung's measured quality (in the metric its search steered
// by) must reach its target (rungGoal: its size may have lowered it) less
// the target's tolerance, or, for a rung whose target its cap put out of
// reach, what the search predicted less the tolerance. It returns an
// *OutputError (quality_target) for each rung below, saying what was
// measured; none for a plan of fixed settings.
func (pl *Plan) Gate(outs []Output) ([]*OutputError, error) {
	metric := pl.gateMetric()
	if metric == "" {
		return nil, nil
	}
	t := pl.Quality.Target.For(metric)
	if t == nil {
		return nil, nil
	}
	searched := map[string]RungSearch{}
	for _, r := range pl.Quality.Search.Rungs {
		searched[r.Name] = r
	}
	var below []*OutputError
	gated := map[string]bool{}
	for _, o := range outs {
		name, ok := pl.RungOf(o)
		if !ok || gated[name] {
			continue // not a video rendition, or one seen already
		}
		gated[name] = true
		r, ok := searched[name]
		if !ok || r.Dropped != "" || r.Capped {
			continue // dropped, or as good as its cap allows
		}
		bar, what := r.Target, fmt.Sprintf("its target of %s", scoreText(metric, r.Target))
		if r.Bound > 0 {
			what += fmt.Sprintf(" (the best its size reached, %s, less %s: its own, %s, is out of reach at this size)",
				scoreText(metric, r.Bound), scoreText(metric, r.Bound-r.Target), scoreText(metric, r.Wanted))
		}
		if !r.Reached {
			bar, what = r.Score, fmt.Sprintf("the %s the search found reachable under its cap (its target of %s is not)", scoreText(metric, r.Score), scoreText(metric, r.Target))
		}
		got := o.SSIM
		if metric == profile.MetricVMAF {
			if o.VMAF == nil {
				// The worker's doing, not the rendition's: tried again.
				return nil, fmt.Errorf("%s (%s): VMAF was not measured, and the quality gate needs it", o.Path, o.Name)
			}
			got = o.VMAF.Mean
		}
		if got < bar-t.Tolerance {
			crf := r.CRF
			if i := slices.IndexFunc(pl.Rungs, func(p RungPlan) bool { return p.Name == name }); i >= 0 {
				crf = pl.Rungs[i].CRF // a re-encode's
			}
			below = append(below, &OutputError{Output: o.Path, Code: CodeQualityTarget, Rung: name, Problem: fmt.Sprintf("(%s): %s %s is below %s, by more than the tolerance of %g (CRF %d, predicted %s); give the rung more bits (max_bitrate) or lower the target",
				o.Name, strings.ToUpper(metric), scoreText(metric, got), what, t.Tolerance, crf, scoreText(metric, r.Score))})
		}
	}
	return below, nil
}

// RungOf is the name of the plan's rung that a verified output is: an hls
// video rendition, or an mp4 or mkv's one file; false for any other
// output (audio, subtitles, pictures, playlists).
func (pl *Plan) RungOf(o Output) (string, bool) {
	switch {
	case pl.Format == profile.FormatHLS && o.Kind == "hls" && o.Width > 0 && o.Codec != "" && o.Codec != "webvtt":
		return o.Name, true
	case pl.Format != profile.FormatHLS && o.Kind == pl.Format && o.Path == pl.FileName() && len(pl.Rungs) > 0:
		return pl.Rungs[0].Name, true
	}
	return "", false
}

// ReencodeStep is how much lower the CRF of a rung the gate found below
// its bar is re-encoded with (about a third less bitrate's worth of
// quality back).
const ReencodeStep = 3

// Reencode makes a gated plan stricter, once: every rung below (Gate)
// gets its CRF lowered by ReencodeStep, no lower than its encoder's
// scale. It says false when the plan was re-encoded already, or no rung
// below can go lower; the gate's failure then stands. A split plan is
// encoded again whole (one encode task), its chunks as they were.
func (pl *Plan) Reencode(below []*OutputError) bool {
	if pl.Quality == nil || pl.Quality.Search == nil || pl.Quality.Reencoded || len(below) == 0 {
		return false
	}
	lower := map[int]int{} // rung → its stricter CRF
	for _, b := range below {
		i := slices.IndexFunc(pl.Rungs, func(r RungPlan) bool { return r.Name == b.Rung })
		if i < 0 || pl.Rungs[i].CRF == 0 {
			return false // not a searched rung of the plan
		}
		if crf := max(pl.Rungs[i].CRF-ReencodeStep, crfScaleOf(pl.RungVideo(i).Encoder).lo); crf < pl.Rungs[i].CRF {
			lower[i] = crf
		}
	}
	if len(lower) == 0 {
		return false // every one at the bottom of the scale already
	}
	for i, crf := range lower {
		r := &pl.Rungs[i]
		for k := range pl.Quality.Search.Rungs {
			if rs := &pl.Quality.Search.Rungs[k]; rs.Name == r.Name {
				rs.Reencoded = fmt.Sprintf("below its bar at CRF %d: encoded again at CRF %d", r.CRF, crf)
			}
		}
		r.CRF = crf
	}
	if pl.Format != profile.FormatHLS {
		pl.Video.CRF = pl.Rungs[0].CRF
	}
	pl.Quality.Reencoded = true
	return true
}
