package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// overhead measures what herd adds to the tools it runs: from the start of
// an upload to the poll that sees the job succeeded, less the time at least
// one ffmpeg or ffprobe was running (found by running herd with a shim in
// their place that records when each ran).
func overhead(ctx context.Context, e *env, s *Section) error {
	src, in, err := e.make(ctx, e.smallInput())
	if err != nil {
		return err
	}
	runs := 5
	if e.Quick {
		runs = 1 // make test runs it: one run proves the path
	}
	work, err := e.dir("overhead")
	if err != nil {
		return err
	}
	t := s.table(fmt.Sprintf("Median of %d runs", runs), "profile", "submit → succeeded", "ffmpeg/ffprobe running", "herd's own time", "tool runs per job")
	for _, profile := range []string{"web-hls", "mp4-library"} {
		var total, tools, own []time.Duration
		var all []interval
		for i := range runs {
			dir := filepath.Join(work, fmt.Sprintf("%s-%d", profile, i))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			logPath := filepath.Join(dir, "tools.log")
			ffmpeg, ffprobe, err := shimDir(dir, logPath)
			if err != nil {
				return err
			}
			h, err := e.startHerd(ctx, filepath.Join(dir, "data"), nil, "--ffmpeg", ffmpeg, "--ffprobe", ffprobe)
			if err != nil {
				return err
			}
			t0 := time.Now()
			_, took, err := h.submitAndWait(ctx, src, profile)
			if err != nil {
				_ = h.stop()
				return err
			}
			if err := h.stop(); err != nil {
				return err
			}
			spans, err := readShimLog(logPath)
			if err != nil {
				return err
			}
			all = nil
			for _, v := range spans {
				for _, iv := range v {
					if iv.to.After(t0) { // not the version checks at start
						all = append(all, iv)
					}
				}
			}
			ran := covered(all, t0, t0.Add(took))
			total, tools, own = append(total, took), append(tools, ran), append(own, took-ran)
			e.logf("overhead: %s run %d: %s, tools %s, herd %s", profile, i+1, secs(took), secs(ran), ms(took-ran))
		}
		mo := median(own)
		t.add(profile, secs(median(total)), secs(median(tools)), ms(mo), fmt.Sprint(len(all)))
		s.target(fmt.Sprintf("herd's own time ≤ 0.3 s (%s)", profile), ms(mo), mo <= 300*time.Millisecond)
	}
	s.About = append(s.About,
		"Input: "+in.about+".",
		"herd serve (SQLite, local disk, in-process workers) on a fresh data folder per run, with --ffmpeg and --ffprobe pointing at a shim that runs the real tool and records when it started and ended. "+
			"The clock starts before the upload (POST /api/v1/jobs) and stops at the poll (every 10 ms) that sees the job succeeded; herd's own time is what is left once every moment at least one ffmpeg or ffprobe ran is taken out: "+
			"the upload, storing and hashing the source, queueing and claiming each task, moving outputs, writing the database, and up to 10 ms of polling.")
	s.Ran = append(s.Ran, "herd serve --ffmpeg SHIM/ffmpeg --ffprobe SHIM/ffprobe; herd submit INPUT --profile P --wait")
	return nil
}
