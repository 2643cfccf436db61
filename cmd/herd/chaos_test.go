package main_test

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/testenv"
)

// The chaos run (issue #7, item 4): a server and several workers run as
// processes, jobs made from generated and real clips arrive, and random
// workers and the server are SIGKILLed at random moments, then restarted.
// At the end every job must have succeeded exactly once with verified
// outputs, no lease may be held, no temporary file may be left, and no task
// may have run past its attempt cap.
//
// The defaults are the short run of `make test`. `make chaos` runs the long
// one by setting (all optional):
//
//	HERD_CHAOS_JOBS          jobs to submit (default 12)
//	HERD_CHAOS_WORKERS       remote worker processes (default 2)
//	HERD_CHAOS_SERVER_KILLS  SIGKILLs of the server (default 1)
//	HERD_CHAOS_WORKER_KILLS  SIGKILLs of workers (default 2)
//	HERD_CHAOS_REAL          real clips from internal/media/testdata, 0 to 3, each with both profiles (default 1)
//	HERD_CHAOS_WINDOW        the kills happen within this long after the first submission, or as soon as their victim is back up after it (default 3 s a job, at least 20 s)
//	HERD_CHAOS_DEADLINE      how long the jobs may take in all (default 5m + 10 s a job)
//	HERD_CHAOS_SEED          seed of every random choice; printed, so a run can be repeated
//	HERD_CHAOS_LOGS          a folder to write every process's log into, one file per start
func TestChaos(t *testing.T) {
	t.Parallel()
	cfg := chaosConfigFromEnv(t)
	fmt.Printf("chaos: seed %d (HERD_CHAOS_SEED=%d repeats this run's choices): %d jobs, %d workers, %d server and %d worker kills within %s\n",
		cfg.seed, cfg.seed, cfg.jobs, cfg.workers, cfg.serverKills, cfg.workerKills, cfg.window)
	rng := rand.New(rand.NewPCG(uint64(cfg.seed), 0x6865726463686173))

	dir := t.TempDir()
	jobs := chaosJobs(t, dir, cfg, rng)
	c := &chaosCluster{t: t, cfg: cfg, dir: dir, data: filepath.Join(dir, "data"), addr: freeAddr(t),
		// A task loses at most one attempt to each kill; any more is a bug
		// the cap check below is there to catch.
		maxAttempts: cfg.serverKills + cfg.workerKills + 3}
	t.Cleanup(c.saveLogs) // also when the run stops early
	c.startServer()
	for i := range cfg.workers {
		tok, stderr, code := c.srv.herd("token", "create", "--registration") // one use each
		require.Equal(t, 0, code, stderr)
		w := &chaosWorker{name: fmt.Sprintf("chaos-%d", i+1), data: filepath.Join(dir, fmt.Sprintf("worker-%d", i+1))}
		c.workers = append(c.workers, w)
		c.startWorker(w, strings.TrimSpace(tok))
	}

	start := time.Now()
	c.run(jobs, rng)
	c.restartAll() // whatever waits for its restart comes back before the checks
	duration := time.Since(start)

	views := c.checkJobs(jobs)
	c.stopAll()
	c.checkDatabase()
	c.checkTempFiles(views)

	succeeded := 0
	for _, v := range views {
		if v.State == "succeeded" {
			succeeded++
		}
	}
	fmt.Printf(`chaos summary (seed %d):
  jobs:        %d submitted (%d submit retries), %d succeeded
  kills:       %d of %d planned (server %d, worker %d)
  restarts:    %d (server %d, worker %d)
  attempts:    %d retries, highest %d of a cap of %d
  duration:    %s (jobs), %s (in all)
  violations:  %d
`, cfg.seed, len(jobs), c.submitRetries, succeeded, c.serverKilled+c.workerKilled, cfg.serverKills+cfg.workerKills, c.serverKilled, c.workerKilled,
		c.serverRestarted+c.workerRestarted, c.serverRestarted, c.workerRestarted, c.lostAttempts, c.highestAttempt, c.maxAttempts,
		duration.Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond), len(c.violations))
	for _, v := range c.violations {
		t.Errorf("violation: %s", v)
	}
}

type chaosConfig struct {
	jobs, workers, serverKills, workerKills, real int
	window, deadline                              time.Duration
	seed                                          int64
}

func chaosConfigFromEnv(t *testing.T) chaosConfig {
	t.Helper()
	num := func(name string, def int) int {
		v := os.Getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "%s must be a whole number", name)
		require.GreaterOrEqual(t, n, 0, name)
		return n
	}
	dur := func(name string, def time.Duration) time.Duration {
		v := os.Getenv(name)
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		require.NoError(t, err, "%s must be a duration such as 90s", name)
		return d
	}
	c := chaosConfig{
		jobs: num("HERD_CHAOS_JOBS", 12), workers: num("HERD_CHAOS_WORKERS", 2),
		serverKills: num("HERD_CHAOS_SERVER_KILLS", 1), workerKills: num("HERD_CHAOS_WORKER_KILLS", 2),
		real: min(num("HERD_CHAOS_REAL", 1), 3),
	}
	require.Positive(t, c.jobs, "HERD_CHAOS_JOBS")
	require.Positive(t, c.workers, "HERD_CHAOS_WORKERS")
	c.window = dur("HERD_CHAOS_WINDOW", max(20*time.Second, time.Duration(c.jobs)*3*time.Second))
	c.deadline = dur("HERD_CHAOS_DEADLINE", 5*time.Minute+time.Duration(c.jobs)*10*time.Second)
	c.seed = time.Now().UnixNano()
	if v := os.Getenv("HERD_CHAOS_SEED"); v != "" {
		var err error
		c.seed, err = strconv.ParseInt(v, 10, 64)
		require.NoError(t, err, "HERD_CHAOS_SEED must be a whole number")
	}
	return c
}

// chaosJob is one submission: a source and a profile.
type chaosJob struct {
	src, profile string
	duration     float64 // the source's, by ffprobe
	id           string  // once a submission returned it
	retryAt      time.Time
}

// chaosJobs makes the sources: real clips first (each with both profiles),
// then generated ones of different sizes, lengths, patterns and tones,
// each with both profiles, some without audio. Every source differs in
// content, so no two submissions are the same job.
func chaosJobs(t *testing.T, dir string, cfg chaosConfig, rng *rand.Rand) []*chaosJob {
	t.Helper()
	profiles := []string{"mp4-library", "web-hls", chunkedProfile}
	var jobs []*chaosJob
	add := func(src string) {
		d := probeDuration(t, src)
		for _, p := range profiles {
			if len(jobs) < cfg.jobs {
				jobs = append(jobs, &chaosJob{src: src, profile: p, duration: d})
			}
		}
	}
	for _, name := range []string{"cityCC0.mpg", "movie-hello.mp4", "Megamind.avi"}[:cfg.real] {
		add(filepath.Join("..", "..", "internal", "media", "testdata", name))
	}
	sizes := []string{"320x180", "256x144", "426x240", "320x240"}
	patterns := []string{"testsrc2", "testsrc", "smptebars", "rgbtestsrc"}
	for i := 0; len(jobs) < cfg.jobs; i++ {
		p := filepath.Join(dir, fmt.Sprintf("gen-%02d.mp4", i))
		c := testenv.Clip{Pattern: patterns[rng.IntN(len(patterns))], Size: sizes[rng.IntN(len(sizes))], Rate: []int{24, 25, 30}[rng.IntN(3)]}
		if i%4 != 3 {
			c.Tone, c.Stereo = 200+37*i, true
		}
		c.Seconds = float64(2 + rng.IntN(3))
		if c.Tone == 0 {
			// Without a tone the content could repeat: the frame count and
			// metadata make this clip unlike every other one.
			c.Extra = []string{"-metadata", fmt.Sprintf("title=chaos %d", i)}
		}
		require.NoError(t, c.Make(p))
		add(p)
	}
	return jobs
}

// probeDuration is a file's duration in seconds by ffprobe (-1 when it has none).
func probeDuration(t *testing.T, path string) float64 {
	t.Helper()
	d, err := ffprobeDuration(path)
	require.NoError(t, err)
	return d
}

func ffprobeDuration(path string) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1", path).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("ffprobe %s: %v: %s", filepath.Base(path), err, tail(string(out), 400))
	}
	d, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		return 0, fmt.Errorf("ffprobe %s: no duration in %q", filepath.Base(path), out)
	}
	return d, nil
}

type chaosWorker struct {
	name, data string
	proc       *workerProc // nil while it is down
}

type chaosCluster struct {
	t           *testing.T
	cfg         chaosConfig
	dir, data   string
	addr        string // the server's, the same across restarts: workers reconnect to it
	maxAttempts int
	srv         *server // its cmd has exited while the server is down
	srvUp       bool
	workers     []*chaosWorker

	serverKilled, workerKilled, serverRestarted, workerRestarted int
	submitRetries, highestAttempt, lostAttempts                  int
	logs                                                         []chaosLog
	pendingRestarts                                              []chaosRestart
	violations                                                   []string
}

// chaosLog is the log of one process start.
type chaosLog struct {
	name string
	buf  *testenv.SyncBuffer
}

// saveLogs writes every process's log into HERD_CHAOS_LOGS, when it is set.
func (c *chaosCluster) saveLogs() {
	dir := os.Getenv("HERD_CHAOS_LOGS")
	if dir == "" {
		return
	}
	require.NoError(c.t, os.MkdirAll(dir, 0o755))
	for i, l := range c.logs {
		require.NoError(c.t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("%02d-%s.log", i+1, l.name)), []byte(l.buf.String()), 0o644))
	}
	fmt.Printf("chaos: %d process logs are in %s\n", len(c.logs), dir)
}

// chaosRestart is a killed process waiting to come back.
type chaosRestart struct {
	at     time.Time
	worker *chaosWorker // nil: the server
}

func (c *chaosCluster) violation(format string, args ...any) {
	c.violations = append(c.violations, fmt.Sprintf(format, args...))
}

// chunkedProfile splits every chaos source of 2 s or more into 1 s chunks.
const chunkedProfile = "chunked-hls"

func (c *chaosCluster) startServer() {
	c.t.Helper()
	dir := filepath.Join(c.data, "profiles")
	require.NoError(c.t, os.MkdirAll(dir, 0o755))
	require.NoError(c.t, os.WriteFile(filepath.Join(dir, chunkedProfile+".yaml"), []byte(`name: `+chunkedProfile+`
version: 1
description: web-hls in 1 s segments and 1 s chunks
format: hls
segment_seconds: 1
chunk_seconds: 1
video:
  codec: h264
  rungs: [{height: 240, bitrate: 400k}, {height: 144, bitrate: 200k}]
audio: {codec: aac, bitrate: 96k, channels: 2}
thumbnails: {poster: true}
`), 0o644))
	c.srv = startServer(c.t, c.data, "--addr", c.addr, "--local-workers", "0",
		"--max-attempts", strconv.Itoa(c.maxAttempts))
	c.srvUp = true
	c.logs = append(c.logs, chaosLog{"server", c.srv.logs})
}

// startWorker runs `herd worker` with w's name and folder: the first start
// trades tok for a worker key kept there; later ones (tok "") reuse it.
func (c *chaosCluster) startWorker(w *chaosWorker, tok string) {
	c.t.Helper()
	w.proc = spawnWorker(c.t, "http://"+c.addr, w.name, w.data, tok, "--grace", "5s")
	c.logs = append(c.logs, chaosLog{w.name, w.proc.logs})
}

// kill SIGKILLs the server (w nil) or a worker and schedules its restart.
func (c *chaosCluster) kill(w *chaosWorker, pause time.Duration) {
	c.t.Helper()
	cmd, what := c.srv.cmd, "server"
	if w != nil {
		cmd, what = w.proc.cmd, "worker "+w.name
	}
	require.NoError(c.t, cmd.Process.Signal(syscall.SIGKILL), what)
	_ = cmd.Wait()
	if w != nil {
		w.proc = nil
		c.workerKilled++
	} else {
		c.srvUp = false
		c.serverKilled++
	}
	c.pendingRestarts = append(c.pendingRestarts, chaosRestart{at: time.Now().Add(pause), worker: w})
	c.t.Logf("%s: SIGKILLed %s; restart in %s", time.Now().Format("15:04:05.000"), what, pause.Round(time.Millisecond))
}

// restartDue restarts what has waited long enough (everything when all).
func (c *chaosCluster) restartDue(all bool) {
	c.t.Helper()
	var later []chaosRestart
	for _, r := range c.pendingRestarts {
		if !all && time.Now().Before(r.at) {
			later = append(later, r)
			continue
		}
		if r.worker == nil {
			c.startServer()
			c.serverRestarted++
			c.t.Logf("%s: restarted the server", time.Now().Format("15:04:05.000"))
		} else {
			c.startWorker(r.worker, "")
			c.workerRestarted++
			c.t.Logf("%s: restarted worker %s", time.Now().Format("15:04:05.000"), r.worker.name)
		}
	}
	c.pendingRestarts = later
}

func (c *chaosCluster) restartAll() { c.restartDue(true) }

// chaosKill is one planned kill: when, whom (-1: the server), and how
// long the victim stays down.
type chaosKill struct {
	ended  float64       // once this share of the jobs has ended...
	delay  time.Duration // ...and this much longer,
	latest time.Duration // or at this moment of the window at the latest
	target int
	pause  time.Duration
}

// plan draws the kills, the server's and the workers' shuffled together.
// A moment is drawn on the run's progress (the share of jobs ended, plus
// a random delay) rather than on the clock alone, so that kills land while
// work remains however fast this machine is; each also has a random latest
// moment in the window, which bounds the chaos in time.
func (c *chaosCluster) plan(rng *rand.Rand) []chaosKill {
	var ks []chaosKill
	for i := range c.cfg.serverKills + c.cfg.workerKills {
		k := chaosKill{ended: 0.85 * rng.Float64(), delay: time.Duration(rng.Int64N(int64(2 * time.Second))),
			latest: time.Duration(rng.Int64N(int64(c.cfg.window))), target: -1,
			pause: 200*time.Millisecond + time.Duration(rng.Int64N(int64(2*time.Second)))}
		if i >= c.cfg.serverKills {
			k.target = rng.IntN(len(c.workers))
		}
		ks = append(ks, k)
	}
	slices.SortFunc(ks, func(a, b chaosKill) int { return cmp.Compare(a.ended, b.ended) })
	return ks
}

// chaosSubmit is a `herd submit` in flight.
type chaosSubmit struct {
	job  *chaosJob
	out  *bytes.Buffer
	errb *bytes.Buffer
	done chan error
}

// run submits the jobs (two submissions at a time, retried when the server
// was down or died under them) and carries out the kills until every job
// has ended, or the deadline passed.
func (c *chaosCluster) run(jobs []*chaosJob, rng *rand.Rand) {
	t := c.t
	t.Helper()
	start := time.Now()
	kills := c.plan(rng)
	var inflight []*chaosSubmit
	queue := slices.Clone(jobs)
	var lastPoll time.Time
	ended, running := 0, 0 // jobs, at the last poll
	var due time.Time      // when the next kill fires, once its share of jobs has ended
	for {
		now := time.Now()
		if now.Sub(start) > c.cfg.deadline {
			c.violation("the jobs did not all end within %s: %s", c.cfg.deadline, c.describeUnfinished(jobs))
			for _, s := range inflight {
				<-s.done //nolint:errcheck // only waiting for it to end, the run has already failed; each submission has its own time limit
			}
			return
		}
		// Submissions that ended: an id, or back into the queue.
		inflight = slices.DeleteFunc(inflight, func(s *chaosSubmit) bool {
			select {
			case err := <-s.done:
				id := strings.TrimSpace(s.out.String())
				switch {
				case err == nil && strings.HasPrefix(id, "j"):
					if s.job.id != "" && s.job.id != id {
						c.violation("%s with %s: submitted again, it became a second job %s (first %s)", filepath.Base(s.job.src), s.job.profile, id, s.job.id)
					}
					s.job.id = id
				default:
					c.submitRetries++
					s.job.retryAt = time.Now().Add(300 * time.Millisecond)
					queue = append(queue, s.job)
					t.Logf("submit %s (%s) failed, retrying: %v: %s", filepath.Base(s.job.src), s.job.profile, err, tail(strings.TrimSpace(s.errb.String()), 300))
				}
				return true
			default:
				return false
			}
		})
		// New submissions while the server is up.
		for c.srvUp && len(inflight) < 2 && len(queue) > 0 && !time.Now().Before(queue[0].retryAt) {
			inflight = append(inflight, c.submit(queue[0]))
			queue = queue[1:]
		}
		// The job list, twice a second while the server is up.
		if c.srvUp && now.Sub(lastPoll) > 500*time.Millisecond {
			lastPoll = now
			if list, ok := c.listJobs(); ok {
				ended, running = 0, 0
				for _, j := range list {
					if chaosFinal(j.State) {
						ended++
					} else if j.State == "running" {
						running++
					}
				}
			}
		}
		if len(kills) > 0 && due.IsZero() && float64(ended) >= kills[0].ended*float64(len(jobs)) {
			due = now.Add(kills[0].delay)
		}
		// The next kill, when it is due, work remains, and its victim is up
		// (else it waits for the restart: every planned kill happens).
		if len(kills) > 0 && ended < len(jobs) && ((!due.IsZero() && !now.Before(due)) || now.Sub(start) >= kills[0].latest) {
			k := kills[0]
			var w *chaosWorker
			up := c.srvUp
			if k.target >= 0 {
				// The one drawn, or the next that is up.
				for i := range c.workers {
					if cand := c.workers[(k.target+i)%len(c.workers)]; cand.proc != nil {
						w = cand
						break
					}
				}
				up = w != nil
			}
			if up {
				kills, due = kills[1:], time.Time{}
				t.Logf("kill %d: %d of %d jobs ended, %d running", c.serverKilled+c.workerKilled+1, ended, len(jobs), running)
				c.kill(w, k.pause)
			}
		}
		c.restartDue(false)
		// Done when every job was submitted and has ended.
		if c.srvUp && len(queue) == 0 && len(inflight) == 0 && ended >= len(jobs) {
			if all, ok := c.allEnded(jobs); ok && all {
				if len(kills) > 0 {
					t.Logf("%d planned kills did not happen: every job ended first", len(kills))
				}
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// submit starts `herd submit` for j; its exit arrives on done.
func (c *chaosCluster) submit(j *chaosJob) *chaosSubmit {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, herdBin, "--server", "http://"+c.addr, "--data", c.data, "submit", j.src, "--profile", j.profile)
	cmd.Env = append(os.Environ(), "HERD_TOKEN=", "HERD_SERVER=")
	s := &chaosSubmit{job: j, out: &bytes.Buffer{}, errb: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = s.out, s.errb
	go func() {
		defer cancel()
		s.done <- cmd.Run()
	}()
	return s
}

// chaosClient asks the server without failing the test when it is down.
var chaosClient = &http.Client{Timeout: 10 * time.Second}

func (c *chaosCluster) tryGet(path string, v any) error {
	req, err := http.NewRequest(http.MethodGet, "http://"+c.addr+path, nil)
	if err != nil {
		return err
	}
	tok, err := os.ReadFile(filepath.Join(c.data, "admin.token"))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := chaosClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, tail(string(body), 300))
	}
	return json.Unmarshal(body, v)
}

// listJobs pages through every job (ok false when the server did not answer).
func (c *chaosCluster) listJobs() ([]jobJSON, bool) {
	var all []jobJSON
	cursor := ""
	for range 100 {
		var page struct {
			Jobs []jobJSON
			Next string
		}
		if err := c.tryGet("/api/v1/jobs?limit=500&cursor="+cursor, &page); err != nil {
			return nil, false
		}
		all = append(all, page.Jobs...)
		if page.Next == "" {
			return all, true
		}
		cursor = page.Next
	}
	return all, true
}

func chaosFinal(state string) bool {
	return state == "succeeded" || state == "failed" || state == "canceled"
}

// allEnded reports whether every submitted job has ended.
func (c *chaosCluster) allEnded(jobs []*chaosJob) (ended, ok bool) {
	list, ok := c.listJobs()
	if !ok {
		return false, false
	}
	state := map[string]string{}
	for _, j := range list {
		state[j.ID] = j.State
	}
	for _, j := range jobs {
		if !chaosFinal(state[j.id]) {
			return false, true
		}
	}
	return true, true
}

func (c *chaosCluster) describeUnfinished(jobs []*chaosJob) string {
	list, _ := c.listJobs()
	state := map[string]string{}
	for _, j := range list {
		state[j.ID] = j.State
	}
	var out []string
	for _, j := range jobs {
		if j.id == "" {
			out = append(out, fmt.Sprintf("%s (%s) never submitted", filepath.Base(j.src), j.profile))
		} else if !chaosFinal(state[j.id]) {
			out = append(out, fmt.Sprintf("%s %s (%s): %q", j.id, filepath.Base(j.src), j.profile, state[j.id]))
		}
	}
	return strings.Join(out, "; ")
}

// checkJobs: every job succeeded, exactly once, and its outputs are there,
// listed once, served, and of the source's duration.
func (c *chaosCluster) checkJobs(jobs []*chaosJob) []jobJSON {
	t := c.t
	t.Helper()
	list, ok := c.listJobs()
	require.True(t, ok, "the server answers after the run")
	if len(list) != len(jobs) {
		c.violation("%d jobs exist for %d distinct submissions", len(list), len(jobs))
	}
	var views []jobJSON
	for _, j := range jobs {
		if j.id == "" {
			continue // reported as unfinished
		}
		resp, body := c.srv.get("/api/v1/jobs/"+j.id, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		var v jobJSON
		require.NoError(t, json.Unmarshal(body, &v))
		views = append(views, v)
		name := fmt.Sprintf("job %s (%s, %s)", j.id, filepath.Base(j.src), j.profile)
		if v.State != "succeeded" {
			c.violation("%s ended %s: %s", name, v.State, v.Error)
			continue
		}
		finals, chunks := 0, 0
		for _, task := range v.Tasks {
			if task.Kind == "chunk" {
				chunks++
			}
			if task.State != "succeeded" {
				c.violation("%s succeeded but its %s task is %s", name, task.Kind, task.State)
			}
			if task.Kind == "finalize" {
				finals++
			}
			c.highestAttempt = max(c.highestAttempt, task.Attempt)
		}
		if finals != 1 {
			c.violation("%s has %d finalize tasks", name, finals)
		}
		if j.profile == chunkedProfile && j.duration >= 2 && filepath.Ext(j.src) != ".avi" && chunks < 2 {
			c.violation("%s was not split into chunks (%d chunk tasks)", name, chunks)
		}
		var paths struct { // jobJSON leaves out the outputs' paths
			Outputs []struct{ Kind, Path, URL string }
		}
		require.NoError(t, json.Unmarshal(body, &paths))
		outs := paths.Outputs
		if len(outs) == 0 {
			c.violation("%s succeeded without outputs", name)
		}
		seen := map[string]bool{}
		videos := 0
		for _, o := range outs {
			if seen[o.Path] {
				c.violation("%s lists output %s twice", name, o.Path)
			}
			seen[o.Path] = true
			resp, _ := c.srv.get(o.URL, map[string]string{"Range": "bytes=0-0"})
			if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
				c.violation("%s: output %s is not served: %s", name, o.Path, resp.Status)
			}
			file := filepath.Join(c.data, "blobs", "jobs", j.id, "out", filepath.FromSlash(o.Path))
			st, err := os.Stat(file)
			if err != nil || st.Size() == 0 {
				c.violation("%s: output %s is missing or empty on disk: %v", name, o.Path, err)
				continue
			}
			if o.Kind != "mp4" && o.Kind != "hls" {
				continue // poster, sprite, WebVTT: present and served is what counts
			}
			videos++
			d, err := ffprobeDuration(file)
			switch {
			case err != nil:
				c.violation("%s: output %s does not probe: %v", name, o.Path, err)
			case math.Abs(d-j.duration) > 0.5:
				c.violation("%s: output %s lasts %.2f s, the source %.2f s", name, o.Path, d, j.duration)
			}
		}
		if videos == 0 {
			c.violation("%s has no video output", name)
		}
		if seen["master.m3u8"] {
			c.checkLive(name, j.id)
		}
	}
	return views
}

// playlistURIs are a playlist's segment and EXT-X-MAP URIs, or a master's
// media playlists.
var playlistURIs = regexp.MustCompile(`(?m)^([^#\s]\S*)$|URI="([^"]+)"`)

func uris(playlist string) []string {
	var out []string
	for _, m := range playlistURIs.FindAllStringSubmatch(playlist, -1) {
		out = append(out, m[1]+m[2])
	}
	return out
}

// checkLive holds a succeeded hls job's live playlists to what a player
// needs, however often its workers and the server were killed: each ended
// (EXT-X-ENDLIST), listing as many segments as the verified outputs, every
// one of them served.
func (c *chaosCluster) checkLive(name, id string) {
	base := "/api/v1/jobs/" + id + "/live/"
	resp, master := c.srv.get(base+"master.m3u8", nil)
	if resp.StatusCode != http.StatusOK {
		c.violation("%s: its live master playlist is not served: %s", name, resp.Status)
		return
	}
	for _, media := range uris(string(master)) {
		resp, body := c.srv.get(base+media, nil)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "#EXT-X-ENDLIST") {
			c.violation("%s: live %s: %s, ended: %v", name, media, resp.Status, strings.Contains(string(body), "#EXT-X-ENDLIST"))
			continue
		}
		_, final := c.srv.get("/api/v1/jobs/"+id+"/outputs/"+media, nil)
		if got, want := strings.Count(string(body), "#EXTINF"), strings.Count(string(final), "#EXTINF"); got != want {
			c.violation("%s: live %s lists %d segments, the outputs have %d", name, media, got, want)
		}
		for _, seg := range uris(string(body)) {
			if resp, _ := c.srv.get(base+seg, map[string]string{"Range": "bytes=0-0"}); resp.StatusCode != http.StatusPartialContent {
				c.violation("%s: live %s lists %s, which is not served: %s", name, media, seg, resp.Status)
			}
		}
	}
}

// stopAll ends the workers and then the server with SIGTERM: every process
// must exit cleanly.
func (c *chaosCluster) stopAll() {
	c.t.Helper()
	for _, w := range c.workers {
		stopCleanly(c.t, w.proc.cmd, "herd worker "+w.name)
	}
	stopCleanly(c.t, c.srv.cmd, "herd serve")
	c.srvUp = false
}

// checkDatabase reads the stopped server's database: one job per source and
// profile, no lease held, no task past its attempt cap.
func (c *chaosCluster) checkDatabase() {
	t := c.t
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(c.data, "herd.db")+"?mode=ro")
	require.NoError(t, err)
	defer db.Close()
	rows, err := db.Query(`SELECT asset_id, profile, count(*) FROM jobs GROUP BY asset_id, profile HAVING count(*) > 1`)
	require.NoError(t, err)
	for rows.Next() {
		var asset, profile string
		var n int
		require.NoError(t, rows.Scan(&asset, &profile, &n))
		c.violation("%d jobs for source %s with %s", n, asset, profile)
	}
	require.NoError(t, rows.Err())
	rows, err = db.Query(`SELECT id, job_id, kind, state, attempt, max_attempts, lease_owner, lease_expires IS NOT NULL FROM tasks`)
	require.NoError(t, err)
	tasks := 0
	for rows.Next() {
		var id, jobID, kind, state, owner string
		var attempt, maxAttempts int
		var leased bool
		require.NoError(t, rows.Scan(&id, &jobID, &kind, &state, &attempt, &maxAttempts, &owner, &leased))
		tasks++
		c.highestAttempt = max(c.highestAttempt, attempt)
		c.lostAttempts += max(attempt-1, 0)
		if owner != "" || leased || state == "running" {
			c.violation("task %s (%s of %s) still holds a lease: state %s, owner %q", id, kind, jobID, state, owner)
		}
		if attempt > maxAttempts || maxAttempts != c.maxAttempts {
			c.violation("task %s (%s of %s) ran attempt %d of a cap of %d (the server's: %d)", id, kind, jobID, attempt, maxAttempts, c.maxAttempts)
		}
	}
	require.NoError(t, rows.Err())
	if tasks == 0 {
		c.violation("the database holds no tasks")
	}
}

// checkTempFiles looks through the server's and the workers' folders, with
// everything stopped, for what herd writes only for a while: its scratch
// area (blobs/.tmp), staged outputs of finished jobs, .partial uploads,
// .part downloads, .tmp-* and .herd-*.tmp files, unfinished resumable
// uploads, and the workers' scratch folders.
func (c *chaosCluster) checkTempFiles(views []jobJSON) {
	t := c.t
	t.Helper()
	entries := func(dir string) []string {
		es, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			require.NoError(t, err)
		}
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		return names
	}
	if left := entries(filepath.Join(c.data, "blobs", ".tmp")); len(left) > 0 {
		c.violation("the server's scratch area holds %v", left)
	}
	var uploadsLeft []string
	for _, name := range entries(filepath.Join(c.data, "uploads")) {
		if !strings.HasSuffix(name, ".job") { // the job a finished upload became, for a late HEAD (6 h)
			uploadsLeft = append(uploadsLeft, name)
		}
	}
	if len(uploadsLeft) > 0 {
		c.violation("unfinished uploads are left: %v", uploadsLeft)
	}
	for _, v := range views {
		for _, e := range entries(filepath.Join(c.data, "blobs", "jobs", v.ID)) {
			// live: the copies its live playlist lists, kept an hour after
			// the job ended for players still watching (live.Keep).
			if e != "out" && (e != "live" || v.State != "succeeded") {
				c.violation("job %s (%s) keeps %s beside its outputs", v.ID, v.State, e)
			}
		}
	}
	for _, w := range c.workers {
		if left := entries(filepath.Join(w.data, "scratch")); len(left) > 0 {
			c.violation("worker %s's scratch folder holds %v", w.name, left)
		}
	}
	roots := []string{c.data}
	for _, w := range c.workers {
		roots = append(roots, w.data)
	}
	for _, root := range roots {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			n := d.Name()
			if n == ".partial" || strings.HasSuffix(n, ".part") || strings.HasPrefix(n, ".tmp-") ||
				(strings.HasPrefix(n, ".herd-") && strings.HasSuffix(n, ".tmp")) || strings.HasSuffix(n, ".db.tmp") {
				rel, _ := filepath.Rel(c.dir, p)
				c.violation("temporary file left: %s", rel)
			}
			return nil
		})
	}
}
