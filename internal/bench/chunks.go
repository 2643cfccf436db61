package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/herdhq/herd/internal/client"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/jobview"
)

// chunkInput is the split-and-stitch input: the real 720p sample looped to
// 96 s (quick: 12 s at 640x360, which 4 s chunks split in three).
func (e *env) chunkInput() input {
	if e.Quick {
		return input{name: "bench-360p-12s-v1.mp4", seconds: 12, width: 640, height: 360}
	}
	return input{name: "bench-720p-96s-v1.mp4", seconds: 96, width: 1280, height: 720}
}

// chunkSetup is one way of running the chunk scenario's job: how many
// workers, each pinned to its own core, and whether the job is split.
type chunkSetup struct {
	name    string
	workers int
	chunked bool
}

// chunkRun is one setup's run.
type chunkRun struct {
	wall  time.Duration
	top   rendition // the top rung, flattened
	tasks []jobview.TaskView
}

// chunkProfiles are the profiles the chunk scenario runs: the web ladder,
// split on its segment grid, and the library file, split at the source's
// keyframes.
var chunkProfiles = []string{"web-hls", "mp4-library"}

// chunking measures split-and-stitch: one job per profile on a long
// source, by one worker pinned to one core without chunks and with them,
// and by two workers pinned to a core each with chunks. The server runs no
// workers of its own; the setups take turns.
func chunking(ctx context.Context, e *env, s *Section) error {
	src, in, err := e.make(ctx, e.chunkInput())
	if err != nil {
		return err
	}
	work, err := e.dir("chunks")
	if err != nil {
		return err
	}
	// web-hls: 6 segments of 4 s, four chunks of 96 s, two for each of two
	// workers.
	chunkSeconds := 24.0
	if e.Quick {
		chunkSeconds = 4
	}
	setups := []chunkSetup{{"one worker, one core, not split", 1, false}, {"one worker, one core, in chunks", 1, true}}
	if runtime.NumCPU() >= 2 {
		setups = append(setups, chunkSetup{"two workers, one core each, in chunks", 2, true})
	} else {
		s.Notes = append(s.Notes, "This machine has one core: the two-worker setup was left out.")
	}
	if !have("taskset") {
		return fmt.Errorf("taskset (util-linux) is needed to pin workers to cores")
	}
	// Three runs: the median then stands against one disturbed run (two
	// runs' median is their mean, and a run on this shared machine can
	// take a third longer than its twin).
	runs := 3
	if e.Quick {
		runs = 1
	}
	s.About = append(s.About,
		"Input: "+in.about+".",
		fmt.Sprintf("One job per run, of each profile (web-hls: every rung of the built-in profile the input allows, split on its 4 s segment grid; mp4-library: one file, split at the source's keyframes), on a fresh `herd serve --local-workers 0`; its workers are `herd worker` processes, each started with `taskset -c N` (its ffmpeg runs on that core too). Chunked runs use `--chunk-seconds %g`.", chunkSeconds),
		"The clock runs from the start of the upload to the poll (every 10 ms) that sees the job succeeded: probe, split, chunks, audio, stitch, thumbnails, verification and publishing.",
		fmt.Sprintf("Median of %d runs; the setups take turns. SSIM: the top rung (web-hls) or the file (mp4-library) of the first run of each setup against the source, measured the same way (both scaled to the source's size with bicubic).", runs))
	profiles := chunkProfiles
	if e.Quick {
		// An mp4-library job splits in chunks of 10 s or more, at
		// keyframes: too long for the quick input.
		profiles = profiles[:1]
		s.Notes = append(s.Notes, "Quick: web-hls only.")
	}
	for _, prof := range profiles {
		if err := e.chunkProfile(ctx, s, filepath.Join(work, prof), src, in, prof, setups, runs, chunkSeconds); err != nil {
			return fmt.Errorf("%s: %w", prof, err)
		}
	}
	s.Ran = append(s.Ran,
		"herd serve --data DIR --local-workers 0; herd token create --registration (one per worker)",
		"taskset -c 0 herd worker --server URL --registration-token TOKEN (and taskset -c 1 for the second)",
		fmt.Sprintf("herd submit INPUT --profile web-hls|mp4-library [--chunk-seconds %g] --wait", chunkSeconds))
	return nil
}

// chunkProfile runs every setup runs times with profile prof and reports
// its tables and targets.
func (e *env) chunkProfile(ctx context.Context, s *Section, work, src string, in input, prof string, setups []chunkSetup, runs int, chunkSeconds float64) error {
	results := make([][]chunkRun, len(setups))
	for i := range runs {
		for k, su := range setups {
			r, err := e.chunkJob(ctx, filepath.Join(work, fmt.Sprintf("%d-%d", k, i)), src, prof, su, chunkSeconds)
			if err != nil {
				return fmt.Errorf("%s: %w", su.name, err)
			}
			results[k] = append(results[k], r)
			e.logf("chunks: %s, %s, run %d: %s", prof, su.name, i+1, secs(r.wall))
		}
	}

	walls := make([]time.Duration, len(setups))
	t := s.table(prof+": wall time (median)", "setup", "wall", "÷ one worker not split", "chunk tasks")
	for k, su := range setups {
		var ws []time.Duration
		for _, r := range results[k] {
			ws = append(ws, r.wall)
		}
		walls[k] = median(ws)
		n := 0
		for _, task := range results[k][0].tasks {
			if task.Kind == job.KindChunk {
				n++
			}
		}
		t.add(su.name, secs(walls[k]), ratio(walls[k].Seconds(), walls[0].Seconds()), strconv.Itoa(n))
	}

	var files []string
	for k := range setups {
		files = append(files, results[k][0].top.File)
	}
	scores, err := ssim(ctx, filepath.Join(work, "ssim.log"), src, in.width, in.height, files)
	if err != nil {
		return err
	}
	q := s.table(prof+": top rung against the source (first run)", "setup", "SSIM", "size")
	worst := 0.0
	for k, su := range setups {
		q.add(su.name, fmt.Sprintf("%.4f", scores[k]), mib(results[k][0].top.Bytes))
		if k > 0 {
			worst = max(worst, scores[0]-scores[k], scores[k]-scores[0])
		}
	}

	for k, su := range setups {
		var tasks []string
		for _, task := range results[k][0].tasks {
			if task.StartedAt != nil && task.FinishedAt != nil {
				name := string(task.Kind)
				if task.Chunk > 0 {
					name += " " + strconv.Itoa(task.Chunk)
				}
				tasks = append(tasks, fmt.Sprintf("%s %s on %s", name, secs(task.FinishedAt.Sub(*task.StartedAt)), task.Worker))
			}
		}
		s.Notes = append(s.Notes, fmt.Sprintf("%s, %s: tasks of the first run, by their own clocks: %s.", prof, su.name, strings.Join(tasks, ", ")))
	}

	if len(setups) == 3 {
		s.target(prof+": two single-core workers in chunks ≤ 0.6 × one worker not split (wall)", ratio(walls[2].Seconds(), walls[0].Seconds()), walls[2].Seconds() <= 0.6*walls[0].Seconds())
	}
	s.target(prof+": one worker in chunks ≤ 1.1 × not split (wall)", ratio(walls[1].Seconds(), walls[0].Seconds()), walls[1].Seconds() <= 1.1*walls[0].Seconds())
	s.target(prof+": stitched top rung's SSIM within 0.002 of the unsplit one's", fmt.Sprintf("%.4f apart at most", worst), worst <= 0.002)
	return nil
}

// chunkJob runs one setup: a server without workers of its own, su's
// workers pinned to cores 0, 1, ..., and one job to success.
func (e *env) chunkJob(ctx context.Context, data, src, prof string, su chunkSetup, chunkSeconds float64) (chunkRun, error) {
	h, err := e.startHerd(ctx, data, nil, "--local-workers", "0")
	if err != nil {
		return chunkRun{}, err
	}
	defer func() { _ = h.stop() }()
	for w := range su.workers {
		stop, err := e.startPinnedWorker(ctx, h, filepath.Join(data, fmt.Sprintf("worker-%d", w)), w)
		if err != nil {
			return chunkRun{}, err
		}
		defer stop()
	}
	opt := client.SubmitOptions{}
	if su.chunked {
		opt.ChunkSeconds = &chunkSeconds
	} else {
		zero := 0.0
		opt.ChunkSeconds = &zero
	}
	t0 := time.Now()
	j, _, err := h.Client.Submit(ctx, src, prof, opt, nil)
	if err != nil {
		return chunkRun{}, fmt.Errorf("submit: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Minute)
	defer cancel()
	j, err = h.Client.Wait(wctx, j.ID, 10*time.Millisecond, nil)
	wall := time.Since(t0)
	if err != nil {
		return chunkRun{}, fmt.Errorf("wait for job %s: %w", j.ID, err)
	}
	if j.State != job.Succeeded {
		return chunkRun{}, fmt.Errorf("job %s %s: %s\n%s", j.ID, j.State, j.Error, tailFile(h.log, 2000))
	}
	run := chunkRun{wall: wall, tasks: j.Tasks}
	if prof != "web-hls" {
		u, err := output(j, "video")
		if err == nil {
			run.top.File = filepath.Join(data, "out.mp4")
			err = h.download(ctx, u, run.top.File)
		}
		if err != nil {
			return chunkRun{}, err
		}
		st, err := os.Stat(run.top.File)
		if err != nil {
			return chunkRun{}, err
		}
		run.top.Bytes = st.Size()
		return run, nil
	}
	master, err := output(j, "master")
	if err != nil {
		return chunkRun{}, err
	}
	rungs, err := flattenHLS(h.opener(ctx), master, data, "rung")
	if err != nil {
		return chunkRun{}, err
	}
	run.top = rungs[0]
	return run, nil
}

// workerRunning is the line herd worker prints once it takes work.
var workerRunning = regexp.MustCompile(`is running`)

// startPinnedWorker starts `herd worker` on core n against h, with a
// registration token of its own, and returns what stops it.
func (e *env) startPinnedWorker(ctx context.Context, h *herdServer, dir string, n int) (func(), error) {
	name := fmt.Sprintf("core-%d", n)
	tok, err := h.Client.CreateToken(ctx, "registration", name, "1h")
	if err != nil {
		return nil, fmt.Errorf("registration token: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cmd := exec.Command("taskset", "-c", strconv.Itoa(n), e.Herd, "worker", "--server", h.URL, "--name", name, "--data", dir,
		"--registration-token", tok.Secret, "--health-addr", "127.0.0.1:0", "--log-format", "json")
	cmd.Env = append(os.Environ(), "HERD_TOKEN=", "HERD_SERVER=", "HERD_WORKER_TOKEN=")
	if _, _, err := startAwait(ctx, cmd, filepath.Join(dir, "worker.log"), workerRunning, 2*time.Minute); err != nil {
		return nil, fmt.Errorf("herd worker %s: %w", name, err)
	}
	return func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		t := time.AfterFunc(time.Minute, func() { _ = cmd.Process.Kill() })
		_ = cmd.Wait()
		t.Stop()
	}, nil
}
