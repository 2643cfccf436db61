package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// library compares herd's mp4-library job, end to end, with HandBrakeCLI's
// "Fast 1080p30" preset, the tool a Plex or Jellyfin user would otherwise
// point at the same file: time, size and SSIM against the source.
func library(ctx context.Context, e *env, s *Section) error {
	if !have("HandBrakeCLI") {
		return fmt.Errorf("HandBrakeCLI is not installed: make bench and make test install it (apt-get install handbrake-cli)")
	}
	src, in, runs, work, err := e.bigSetup(ctx, "library")
	if err != nil {
		return err
	}
	var herdM, hbM []measured
	herdOut, hbOut := filepath.Join(work, "herd.mp4"), filepath.Join(work, "handbrake.mp4")
	for i := range runs {
		h, j, m, err := e.herdJob(ctx, filepath.Join(work, fmt.Sprintf("herd-%d", i)), src, "mp4-library")
		if err != nil {
			return err
		}
		herdM = append(herdM, m)
		if i == 0 {
			u, err := output(j, "video")
			if err == nil {
				err = h.download(ctx, u, herdOut)
			}
			if err != nil {
				_ = h.stop()
				return err
			}
		}
		if err := h.stop(); err != nil {
			return err
		}
		e.logf("library: herd run %d: %s wall", i+1, secs(herdM[i].Wall))

		out := filepath.Join(work, fmt.Sprintf("handbrake-%d.mp4", i))
		m, err = runCmd(ctx, filepath.Join(work, fmt.Sprintf("handbrake-%d.log", i)), "HandBrakeCLI", "-i", src, "-o", out, "--preset", "Fast 1080p30", "--crop", "0:0:0:0")
		if err != nil {
			return err
		}
		hbM = append(hbM, m)
		if i == 0 {
			if err := os.Rename(out, hbOut); err != nil {
				return err
			}
		} else {
			_ = os.Remove(out)
		}
		e.logf("library: HandBrakeCLI run %d: %s wall", i+1, secs(m.Wall))
	}
	v, err := ssim(ctx, filepath.Join(work, "ssim.log"), src, in.width, in.height, []string{herdOut, hbOut})
	if err != nil {
		return err
	}
	size := func(p string) int64 {
		st, _ := os.Stat(p)
		if st == nil {
			return 0
		}
		return st.Size()
	}
	hw, hc := medianOf(herdM)
	bw, bc := medianOf(hbM)
	t := s.table("Result (time: median)", "tool", "wall", "CPU", "wall ÷ HandBrake", "size", "SSIM")
	t.add("herd mp4-library, end to end", secs(hw), secs(hc), ratio(hw.Seconds(), bw.Seconds()), mib(size(herdOut)), fmt.Sprintf("%.4f", v[0]))
	t.add(`HandBrakeCLI --preset "Fast 1080p30" --crop 0:0:0:0`, secs(bw), secs(bc), "1.00 ×", mib(size(hbOut)), fmt.Sprintf("%.4f", v[1]))
	s.About = append(s.About,
		"Input: "+in.about+".",
		"herd: `herd serve` on a fresh data folder, the mp4-library profile (libx264 -preset fast -crf 22, at most 1080p and 30 fps, AAC 160k stereo, faststart), from the start of the upload to the poll that sees it succeeded; this includes the probe, a poster and verification (the output decoded, its duration checked, SSIM and PSNR measured). CPU: the server's and its children's.",
		"HandBrakeCLI: the Debian package, the preset as shipped (x264 fast, RF 22, peak 30 fps, AAC 160k stereo; its comb detection and decomb filter on) except for cropping: its automatic crop would cut borders it thinks are black (32 columns each side of this input), and SSIM must compare the same picture, so it runs with --crop 0:0:0:0.",
		"SSIM: both outputs against the source at its display size, measured the same way in one ffmpeg run.",
		fmt.Sprintf("Median of %d runs; the tools take turns.", runs))
	const tolerance = 0.001
	s.target(fmt.Sprintf("herd at HandBrake's SSIM (at most %.3f below)", tolerance), fmt.Sprintf("%.4f against %.4f", v[0], v[1]), v[0] >= v[1]-tolerance)
	s.target("herd in ≤ 0.9 × HandBrake's time (wall)", ratio(hw.Seconds(), bw.Seconds()), hw.Seconds() <= 0.9*bw.Seconds())
	s.Ran = append(s.Ran, "herd: herd submit INPUT --profile mp4-library --wait", `HandBrakeCLI -i INPUT -o OUT.mp4 --preset "Fast 1080p30" --crop 0:0:0:0`)
	return nil
}

func medianOf(ms []measured) (wall, cpu time.Duration) {
	var w, c []time.Duration
	for _, m := range ms {
		w, c = append(w, m.Wall), append(c, m.CPU)
	}
	return median(w), median(c)
}
