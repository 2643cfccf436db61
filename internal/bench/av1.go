package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/profile"
)

// av1Point is one encode of the AV1 scenario: its settings, time, size and
// SSIM against the source.
type av1Point struct {
	label string
	crf   int
	m     measured
	bytes int64
	ssim  float64
}

// av1Cost measures what web-cmaf-av1's AV1 ladder costs against its H.264
// one on the bench clip: x264 with the H.264 ladder's preset at CRF 23
// sets an SSIM; SVT-AV1 with the AV1 ladder's preset is searched (bisection
// over its CRF) for the smallest file at that SSIM or above; then wall time
// and size are compared at equal SSIM. Constant quality, not the ladder's
// bitrates, so that each encoder spends what that quality costs it.
func av1Cost(ctx context.Context, e *env, s *Section) error {
	p, ok := profile.Builtin().Get("web-cmaf-av1")
	if !ok || len(p.Video.Ladders) == 0 || p.Video.Ladders[0].Codec != "av1" {
		return fmt.Errorf("no built-in web-cmaf-av1 profile with an AV1 ladder")
	}
	x264Preset, svt := p.Video.Preset, media.SVTPreset(p.Video.Ladders[0].Preset)
	src, in, runs, work, err := e.bigSetup(ctx, "av1")
	if err != nil {
		return err
	}
	n := 0
	encode := func(label string, crf int, codec ...string) (av1Point, error) {
		n++
		out := filepath.Join(work, fmt.Sprintf("%02d.mp4", n))
		args := append([]string{"-nostdin", "-hide_banner", "-y", "-i", src, "-an"}, codec...)
		args = append(args, "-crf", strconv.Itoa(crf), "-g", "100", "-pix_fmt", "yuv420p", out)
		m, err := runCmd(ctx, filepath.Join(work, fmt.Sprintf("%02d.log", n)), "ffmpeg", args...)
		if err != nil {
			return av1Point{}, err
		}
		st, err := os.Stat(out)
		if err != nil {
			return av1Point{}, err
		}
		v, err := ssim(ctx, filepath.Join(work, fmt.Sprintf("%02d-ssim.log", n)), src, in.width, in.height, []string{out})
		if err != nil {
			return av1Point{}, err
		}
		pt := av1Point{label: label, crf: crf, m: m, bytes: st.Size(), ssim: v[0]}
		e.logf("av1: %s CRF %d: %s wall, %d bytes, SSIM %.4f", label, crf, secs(m.Wall), pt.bytes, pt.ssim)
		return pt, nil
	}
	x264Args := []string{"-c:v", "libx264", "-preset", x264Preset, "-profile:v", "high"}
	svtArgs := []string{"-c:v", "libsvtav1", "-preset", svt, "-svtav1-params", "irefresh-type=2"}
	const x264CRF = 23
	x264, err := encode("x264 "+x264Preset, x264CRF, x264Args...)
	if err != nil {
		return err
	}
	// The largest SVT-AV1 CRF (smallest file) whose SSIM is at least
	// x264's: SSIM falls as the CRF rises.
	tried := []av1Point{}
	lo, hi := 20, 63
	var best *av1Point
	for lo <= hi {
		mid := (lo + hi) / 2
		pt, err := encode("SVT-AV1 preset "+svt, mid, svtArgs...)
		if err != nil {
			return err
		}
		tried = append(tried, pt)
		if pt.ssim >= x264.ssim {
			best = &tried[len(tried)-1]
			lo = mid + 1
		} else {
			hi = mid - 1
		}
	}
	if best == nil {
		return fmt.Errorf("SVT-AV1 reached x264's SSIM %.4f at no CRF from 20", x264.ssim)
	}
	// Time: the median of runs encodes of each at the chosen settings.
	xw, aw := []time.Duration{x264.m.Wall}, []time.Duration{best.m.Wall}
	for range runs - 1 {
		x, err := encode("x264 "+x264Preset+" (timing)", x264CRF, x264Args...)
		if err != nil {
			return err
		}
		a, err := encode("SVT-AV1 preset "+svt+" (timing)", best.crf, svtArgs...)
		if err != nil {
			return err
		}
		xw, aw = append(xw, x.m.Wall), append(aw, a.m.Wall)
	}
	xWall, aWall := median(xw), median(aw)
	size := func(n int64) string {
		if n < 1<<20 {
			return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
		}
		return mib(n)
	}
	fps := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(in.seconds)*30/d.Seconds()) }

	t := s.table("At equal SSIM (wall: median)", "encoder", "CRF", "wall", "fps", "wall ÷ x264", "size", "size ÷ x264", "SSIM")
	t.add("x264 -preset "+x264Preset+" (web-cmaf-av1's H.264 ladder)", strconv.Itoa(x264CRF), secs(xWall), fps(xWall), "1.00 ×", size(x264.bytes), "1.00 ×", fmt.Sprintf("%.4f", x264.ssim))
	t.add("SVT-AV1 -preset "+svt+" (web-cmaf-av1's AV1 ladder)", strconv.Itoa(best.crf), secs(aWall), fps(aWall), ratio(aWall.Seconds(), xWall.Seconds()),
		size(best.bytes), ratio(float64(best.bytes), float64(x264.bytes)), fmt.Sprintf("%.4f", best.ssim))
	st := s.table("SVT-AV1 CRF search (one run each)", "CRF", "wall", "size", "SSIM", "≥ x264's SSIM")
	for _, pt := range tried {
		st.add(strconv.Itoa(pt.crf), secs(pt.m.Wall), size(pt.bytes), fmt.Sprintf("%.4f", pt.ssim), strconv.FormatBool(pt.ssim >= x264.ssim))
	}
	s.About = append(s.About,
		"Input: "+in.about+" (30 fps).",
		fmt.Sprintf("x264: `ffmpeg -i INPUT -an -c:v libx264 -preset %s -profile:v high -crf %d -g 100 -pix_fmt yuv420p OUT.mp4`, the preset of web-cmaf-av1's H.264 ladder; its SSIM is the bar.", x264Preset, x264CRF),
		fmt.Sprintf("SVT-AV1: the same with `-c:v libsvtav1 -preset %s -svtav1-params irefresh-type=2 -crf N`, the preset of web-cmaf-av1's AV1 ladder (its `%s`); N is the largest CRF, found by bisection over 20–63, whose SSIM is at least x264's.", svt, p.Video.Ladders[0].Preset),
		"SSIM: each output against the source at its display size, measured the same way as the other scenarios. Constant quality rather than the ladder's bitrates, so that each encoder spends what that quality costs it.",
		fmt.Sprintf("Wall: median of %d runs at the chosen settings; both encoders use both cores.", runs))
	s.target("SVT-AV1 at x264's SSIM in ≤ 0.7 × its bytes (AV1's promise: 30–50 % fewer)", ratio(float64(best.bytes), float64(x264.bytes)), float64(best.bytes) <= 0.7*float64(x264.bytes))
	s.target(fmt.Sprintf("SVT-AV1 preset %s in ≤ 4 × x264 %s's time (wall), so that the AV1 ladder is usable on 2 cores", svt, x264Preset),
		ratio(aWall.Seconds(), xWall.Seconds()), aWall.Seconds() <= 4*xWall.Seconds())
	s.Notes = append(s.Notes, "The AV1 ladder's preset is chosen in internal/profile/builtin/web-cmaf-av1.yaml; README (Profiles) gives the preset sweep it came from.")
	s.Ran = append(s.Ran, "go run ./cmd/herd-bench -only av1 -herd bin/herd -out BENCHMARKS-av1.md")
	return nil
}
