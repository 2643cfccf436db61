package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/jobview"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/pipeline"
)

// ladderRun is one method's run of the ladder.
type ladderRun struct {
	m     measured
	rungs []rendition // flattened video renditions (first run only)
}

// ladder compares herd's web-hls job, end to end, with the hand-written
// single ffmpeg command a video engineer would run for the same rungs and
// encoder settings, and with one ffmpeg per rendition (the gosty model:
// the source decoded once per rung). The methods take turns, so that a
// slow minute of a shared machine falls on all of them.
func ladder(ctx context.Context, e *env, s *Section) error {
	src, in, runs, work, err := e.bigSetup(ctx, "ladder")
	if err != nil {
		return err
	}
	var herdRuns, singleRuns, perRuns, seqRuns []ladderRun
	var herdJob jobview.JobView
	var plan media.Plan
	var singleArgv []string
	var perArgv [][]string
	var packCost time.Duration
	for i := range runs {
		// herd, end to end, with a fresh data folder (the same file twice
		// would be recognised as a duplicate).
		h, j, m, err := e.herdJob(ctx, filepath.Join(work, fmt.Sprintf("herd-%d", i)), src, "web-hls")
		if err != nil {
			return err
		}
		run := ladderRun{m: m}
		if i == 0 {
			// The plan gives the hand-written commands their numbers.
			herdJob = j
			err = json.Unmarshal(j.Plan, &plan)
			var master string
			if err == nil {
				singleArgv, perArgv = handWritten(&plan, src)
				master, err = output(j, "master")
			}
			if err == nil {
				run.rungs, err = flattenHLS(h.opener(ctx), master, work, "herd")
			}
			if err == nil {
				out := filepath.Join(work, fmt.Sprintf("herd-%d", i), "blobs", filepath.FromSlash(pipeline.OutputsKey(j.ID)))
				packCost, err = packagingTime(&plan, out)
			}
		}
		if serr := h.stop(); err == nil {
			err = serr
		}
		if err != nil {
			return err
		}
		herdRuns = append(herdRuns, run)
		e.logf("ladder: herd run %d: %s wall, %s CPU", i+1, secs(run.m.Wall), secs(run.m.CPU))

		// The hand-written single command.
		out, err := e.dir(fmt.Sprintf("ladder/single-%d", i))
		if err != nil {
			return err
		}
		run = ladderRun{}
		run.m, err = runCmd(ctx, filepath.Join(work, fmt.Sprintf("single-%d.log", i)), "ffmpeg", withOut(singleArgv, out)...)
		if err != nil {
			return err
		}
		if i == 0 {
			if run.rungs, err = flattenHLS(localOpener(out), "master.m3u8", work, "single"); err != nil {
				return err
			}
		}
		singleRuns = append(singleRuns, run)
		e.logf("ladder: single command run %d: %s wall, %s CPU", i+1, secs(run.m.Wall), secs(run.m.CPU))

		// One ffmpeg per rendition: all at once (each gets the cores it
		// can use, as on a farm with a free worker per rendition), and one
		// after another (one worker).
		// The first run's outputs together are the ones SSIM is measured on.
		run, err = perRendition(ctx, e, perArgv, fmt.Sprintf("per-%d", i), true, i == 0)
		if err != nil {
			return err
		}
		perRuns = append(perRuns, run)
		e.logf("ladder: per-rendition (together) run %d: %s wall, %s CPU", i+1, secs(run.m.Wall), secs(run.m.CPU))
		if run, err = perRendition(ctx, e, perArgv, fmt.Sprintf("seq-%d", i), false, false); err != nil {
			return err
		}
		seqRuns = append(seqRuns, run)
		e.logf("ladder: per-rendition (one after another) run %d: %s wall, %s CPU", i+1, secs(run.m.Wall), secs(run.m.CPU))
	}

	s.About = append(s.About,
		"Input: "+in.about+".",
		fmt.Sprintf("Rungs (from herd's plan for this input, the web-hls profile): %s; libx264 -preset %s, GOP %d frames (%g s segments), AAC %d kb/s stereo; HLS and DASH over the same fMP4 segments.",
			rungList(plan.Rungs), plan.Video.Preset, plan.GOP, plan.SegmentSeconds, audioKbps(&plan)),
		"herd: `herd serve` (SQLite, local disk, in-process workers) on a fresh data folder; the clock runs from the start of the upload (POST /api/v1/jobs) to the poll (every 10 ms) that sees the job succeeded. "+
			"That includes what herd does beyond the encode: probe, poster and sprite sheet, the audio task, verification (every segment's boxes checked, the first, last and spread segments of every rung decoded (about a third of them, three to five), durations checked, SSIM and PSNR measured on stretches of those), moving the verified outputs into place. CPU is the server's own and its children's (/proc/PID/stat).",
		"Single command: one ffmpeg, source decoded once, split and scaled to every rung, the same encoder settings and muxer (written out below).",
		fmt.Sprintf("Per rendition: %d ffmpeg processes, each decoding the source and encoding one rung (audio with the first), started together (a farm with a free worker for each) and one after another (one worker); wall time from the first start to the last end, CPU summed.", len(perArgv)),
		"SSIM: every rung, each method, measured the same way against the source at its display size (both scaled with bicubic), All channels.",
		fmt.Sprintf("Median of %d runs; the three methods take turns.", runs))

	walls := func(rs []ladderRun) (time.Duration, time.Duration) {
		var ms []measured
		for _, r := range rs {
			ms = append(ms, r.m)
		}
		return medianOf(ms)
	}
	hw, hc := walls(herdRuns)
	sw, sc := walls(singleRuns)
	pw, pc := walls(perRuns)
	t := s.table("Time (median)", "method", "wall", "CPU", "wall ÷ single command", "CPU ÷ single command")
	t.add("herd web-hls, end to end", secs(hw), secs(hc), ratio(hw.Seconds(), sw.Seconds()), ratio(hc.Seconds(), sc.Seconds()))
	t.add("hand-written single ffmpeg", secs(sw), secs(sc), "1.00 ×", "1.00 ×")
	t.add("one ffmpeg per rendition, together", secs(pw), secs(pc), ratio(pw.Seconds(), sw.Seconds()), ratio(pc.Seconds(), sc.Seconds()))
	qw, qc := walls(seqRuns)
	t.add("one ffmpeg per rendition, one after another", secs(qw), secs(qc), ratio(qw.Seconds(), sw.Seconds()), ratio(qc.Seconds(), sc.Seconds()))

	var breakdown []string
	for _, k := range []job.Kind{job.KindProbe, job.KindAudio, job.KindThumbnails, job.KindEncode, job.KindVerify, job.KindFinalize} {
		breakdown = append(breakdown, fmt.Sprintf("%s %s", k, secs(taskTime(herdJob, k))))
	}
	s.Notes = append(s.Notes, "herd's tasks in its first run, by their own clocks (after the probe, the audio and the encode run side by side in herd's two in-process slots, the thumbnails once the audio is done; verify joins the audio renditions to the video before it checks them): "+strings.Join(breakdown, ", ")+".")
	enc := taskTime(herdJob, job.KindEncode)
	packShare := packCost.Seconds() / enc.Seconds()
	s.Notes = append(s.Notes, fmt.Sprintf("Packaging (package pack over the first run's output: every segment's boxes read, IDR and timing checked, I-frame byte ranges and RFC 8216bis peak rates measured, every playlist and the DASH manifest written), median of %d: %.1f ms, %.2f %% of the encode task.", packRuns, float64(packCost.Microseconds())/1000, 100*packShare))
	s.target("packaging (I-frame playlists, measured rates, manifests) < 1 % of the encode task", fmt.Sprintf("%.2f %%", 100*packShare), packShare < 0.01)

	// SSIM per rung, one ffmpeg per method.
	q := s.table("SSIM per rung against the source (first run)", "rung", "herd", "single command", "per rendition", "herd size", "single size", "per-rendition size")
	scores := map[string]map[int]float64{}
	sizes := map[string]map[int]int64{}
	for _, m := range []struct {
		name  string
		rungs []rendition
	}{{"herd", herdRuns[0].rungs}, {"single", singleRuns[0].rungs}, {"per", perRuns[0].rungs}} {
		var files []string
		for _, r := range m.rungs {
			files = append(files, r.File)
		}
		v, err := ssim(ctx, filepath.Join(work, "ssim-"+m.name+".log"), src, in.width, in.height, files)
		if err != nil {
			return err
		}
		scores[m.name], sizes[m.name] = map[int]float64{}, map[int]int64{}
		for i, r := range m.rungs {
			scores[m.name][r.Height] = v[i]
			sizes[m.name][r.Height] = r.Bytes
		}
	}
	var heights []int
	for h := range scores["herd"] {
		heights = append(heights, h)
	}
	slices.Sort(heights)
	slices.Reverse(heights)
	worst := 1.0
	for _, ht := range heights {
		for _, m := range []string{"single", "per"} {
			if _, ok := scores[m][ht]; !ok {
				return fmt.Errorf("%s made no %dp rung", map[string]string{"single": "the single command", "per": "one ffmpeg per rendition"}[m], ht)
			}
		}
		q.add(fmt.Sprintf("%dp", ht), fmt.Sprintf("%.4f", scores["herd"][ht]), fmt.Sprintf("%.4f", scores["single"][ht]), fmt.Sprintf("%.4f", scores["per"][ht]),
			mib(sizes["herd"][ht]), mib(sizes["single"][ht]), mib(sizes["per"][ht]))
		worst = min(worst, scores["herd"][ht]-max(scores["single"][ht], scores["per"][ht]))
	}
	s.Notes = append(s.Notes, fmt.Sprintf("herd's SSIM is at most %.4f below the better of the other two on any rung (the same encoder settings should give the same pictures).", max(0, -worst)))

	s.target("herd end to end ≤ 1.05 × the hand-written single command (wall)", ratio(hw.Seconds(), sw.Seconds()), hw.Seconds() <= 1.05*sw.Seconds())
	s.target("herd end to end ≤ 1.10 × the hand-written single command (CPU)", ratio(hc.Seconds(), sc.Seconds()), hc.Seconds() <= 1.10*sc.Seconds())
	s.target("herd ≥ 1.2 × faster than one ffmpeg per rendition, together (wall)", ratio(pw.Seconds(), hw.Seconds())+" faster", pw.Seconds() >= 1.2*hw.Seconds())
	s.target("herd ≥ 1.2 × faster than one ffmpeg per rendition, one after another (wall)", ratio(qw.Seconds(), hw.Seconds())+" faster", qw.Seconds() >= 1.2*hw.Seconds())

	s.Ran = append(s.Ran,
		"herd: herd serve --data DIR; herd submit INPUT --profile web-hls --wait (the bench uses the same API calls)",
		"single command: ffmpeg "+strings.ReplaceAll(shellJoin(withOut(singleArgv, "OUT")), src, "INPUT"),
		"per rendition, e.g. the smallest rung: ffmpeg "+strings.ReplaceAll(shellJoin(withOut(perArgv[len(perArgv)-1], "OUT")), src, "INPUT"),
		"SSIM: ffmpeg -i SOURCE -i RUNG... -filter_complex '[0:v:0]scale=W:H:flags=bicubic,setsar=1,format=yuv420p,setpts=PTS-STARTPTS,split=N[r0]...;[1:v:0]scale=...[d0];[d0][r0]ssim=shortest=1' -f null -")
	return nil
}

// perRendition runs one ffmpeg per rung, together or one after another;
// with keep, their renditions are joined into files for SSIM.
func perRendition(ctx context.Context, e *env, argvs [][]string, name string, together, keep bool) (ladderRun, error) {
	var (
		run      ladderRun
		mu       sync.Mutex
		wg       sync.WaitGroup
		firstErr error
	)
	outs := make([]string, len(argvs))
	for k := range argvs {
		var err error
		if outs[k], err = e.dir(fmt.Sprintf("ladder/%s-%d", name, k)); err != nil {
			return run, err
		}
	}
	one := func(k int) {
		m, err := runCmd(ctx, filepath.Join(e.Work, "ladder", fmt.Sprintf("%s-%d.log", name, k)), "ffmpeg", withOut(argvs[k], outs[k])...)
		mu.Lock()
		defer mu.Unlock()
		run.m.CPU += m.CPU
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	t0 := time.Now()
	for k := range argvs {
		if together {
			wg.Go(func() { one(k) })
		} else {
			one(k)
		}
	}
	wg.Wait()
	run.m.Wall = time.Since(t0)
	if firstErr != nil || !keep {
		return run, firstErr
	}
	for k, out := range outs {
		r, err := flattenHLS(localOpener(out), "master.m3u8", filepath.Join(e.Work, "ladder"), fmt.Sprintf("%s-r%d", name, k))
		if err != nil {
			return run, err
		}
		run.rungs = append(run.rungs, r...)
	}
	return run, nil
}

// outDirMarker stands for the output folder in an argv until withOut fills it in.
const outDirMarker = "\x00OUT"

// withOut puts an output folder into an argv made by handWritten.
func withOut(argv []string, dir string) []string {
	out := slices.Clone(argv)
	for i, a := range out {
		out[i] = strings.ReplaceAll(a, outDirMarker, dir)
	}
	return out
}

// handWritten is what a video engineer would type for the plan's rungs and
// settings, written here from the plan's numbers rather than by herd's own
// argv builder: the single command (decode once, split, scale, encode every
// rung, one DASH+HLS muxer) and one command per rung.
func handWritten(pl *media.Plan, src string) (single []string, per [][]string) {
	n := len(pl.Rungs)
	gop := strconv.Itoa(pl.GOP)
	top := pl.Rungs[0]
	g := gcd(top.Width, top.Height)
	// ffmpeg 5.1's DASH muxer wants one display aspect ratio per adaptation
	// set; 426x240 is not exactly 16:9, so every rung is tagged with the top's.
	dar := fmt.Sprintf("setdar=%d/%d", top.Width/g, top.Height/g)
	pre := ""
	if pl.FPSFilter {
		pre = "fps=" + strconv.FormatFloat(pl.FPS, 'f', -1, 64) + ","
	}
	x264 := []string{"-c:v", "libx264", "-preset", pl.Video.Preset, "-profile:v", "high", "-g", gop, "-keyint_min", gop, "-sc_threshold", "0"}
	var aac []string
	if len(pl.Audio) > 0 {
		a := pl.Audio[0]
		aac = []string{"-c:a", "aac", "-b:a", strconv.FormatInt(a.Bitrate, 10), "-ac", strconv.Itoa(a.Channels)}
	}
	mux := func(audio bool) []string {
		sets := "id=0,streams=v"
		if audio {
			sets += " id=1,streams=a"
		}
		return []string{"-f", "dash", "-seg_duration", strconv.FormatFloat(pl.SegmentSeconds, 'f', -1, 64),
			"-use_template", "1", "-use_timeline", "1", "-hls_playlist", "1", "-adaptation_sets", sets,
			"-dash_segment_type", "mp4", outDirMarker + "/manifest.mpd"}
	}
	head := []string{"-nostdin", "-hide_banner", "-nostats", "-y", "-i", src}

	var graph strings.Builder
	fmt.Fprintf(&graph, "[0:v:0]%ssplit=%d", pre, n)
	for i := range n {
		fmt.Fprintf(&graph, "[s%d]", i)
	}
	for i, r := range pl.Rungs {
		fmt.Fprintf(&graph, ";[s%d]scale=%d:%d,%s,format=yuv420p[v%d]", i, r.Width, r.Height, dar, i)
	}
	single = append(slices.Clone(head), "-filter_complex", graph.String())
	for i := range n {
		single = append(single, "-map", fmt.Sprintf("[v%d]", i))
	}
	if aac != nil {
		single = append(single, "-map", "0:a:0")
	}
	single = append(single, x264...)
	for i, r := range pl.Rungs {
		single = append(single, fmt.Sprintf("-b:v:%d", i), strconv.FormatInt(r.Bitrate, 10),
			fmt.Sprintf("-maxrate:v:%d", i), strconv.FormatInt(r.MaxRate, 10), fmt.Sprintf("-bufsize:v:%d", i), strconv.FormatInt(r.BufSize, 10))
	}
	single = append(append(single, aac...), mux(aac != nil)...)

	for i, r := range pl.Rungs {
		c := append(slices.Clone(head), "-filter_complex", fmt.Sprintf("[0:v:0]%sscale=%d:%d,%s,format=yuv420p[v0]", pre, r.Width, r.Height, dar), "-map", "[v0]")
		audio := i == 0 && aac != nil
		if audio {
			c = append(c, "-map", "0:a:0")
		}
		c = append(c, x264...)
		c = append(c, "-b:v", strconv.FormatInt(r.Bitrate, 10), "-maxrate", strconv.FormatInt(r.MaxRate, 10), "-bufsize", strconv.FormatInt(r.BufSize, 10))
		if audio {
			c = append(c, aac...)
		}
		per = append(per, append(c, mux(audio)...))
	}
	return single, per
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return max(a, 1)
}

func rungList(rs []media.RungPlan) string {
	var s []string
	for _, r := range rs {
		s = append(s, fmt.Sprintf("%dx%d at %d kb/s (max %d, buffer %d)", r.Width, r.Height, r.Bitrate/1000, r.MaxRate/1000, r.BufSize/1000))
	}
	return strings.Join(s, ", ")
}

func audioKbps(pl *media.Plan) int64 {
	if len(pl.Audio) == 0 {
		return 0
	}
	return pl.Audio[0].Bitrate / 1000
}

// shellJoin writes an argv as a shell would need it, for the report.
func shellJoin(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			//nolint:staticcheck // QF1001: "not one of these" reads better than De Morgan's form
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,+@%", r))
		}) < 0 {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}

// packRuns is how many times packagingTime packages an output.
const packRuns = 5

// packagingTime is the median time herd's packaging takes over an output
// folder it already packaged (it rewrites the same files).
func packagingTime(pl *media.Plan, dir string) (time.Duration, error) {
	var ms []measured
	for range packRuns {
		start := time.Now()
		if _, err := pl.PackageHLS(dir); err != nil {
			return 0, fmt.Errorf("package %s again: %w", dir, err)
		}
		ms = append(ms, measured{Wall: time.Since(start)})
	}
	wall, _ := medianOf(ms)
	return wall, nil
}
