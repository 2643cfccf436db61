// Package worker runs tasks: a pool of slots that claim leases from a queue,
// keep them alive with heartbeats, run the task's executor, and report the
// outcome with the lease's fencing token. The same pool serves the server's
// in-process workers and remote `herd worker` processes; only the Queue differs.
package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/herdhq/herd/internal/backoff"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
)

// Queue is where a pool gets work and reports on it.
type Queue interface {
	Claim(ctx context.Context, owner, worker string, caps []string) (*job.Claimed, error)
	Wait(ctx context.Context, limit time.Duration)
	Heartbeat(ctx context.Context, l job.Lease, p job.Progress) error
	Complete(ctx context.Context, l job.Lease, r job.Result) error
	Fail(ctx context.Context, l job.Lease, f job.Failure) error
	Release(ctx context.Context, l job.Lease) error
}

// Executor runs one claimed task. report may be called at any rate.
type Executor interface {
	Execute(ctx context.Context, c *job.Claimed, report func(job.Progress)) (job.Result, error)
}

// Observer is told how each task ended (metrics); may be nil.
type Observer interface {
	TaskFinished(kind job.Kind, outcome string, d time.Duration, speed float64)
}

// Config tunes a pool.
type Config struct {
	Name        string   // worker name shown on tasks
	OwnerPrefix string   // lease owners are OwnerPrefix + slot number
	Slots       int      // concurrent tasks; 0 → 1
	Caps        []string // capabilities this worker proved
	// ClaimCaps, when set, narrows Caps before each claim (e.g. no GPU
	// capabilities while every GPU encode session is in use).
	ClaimCaps  func(caps []string) []string
	Heartbeat  time.Duration // 0 → DefaultHeartbeat
	Grace      time.Duration // on shutdown, how long running tasks may finish; 0 → DefaultGrace
	StallAfter time.Duration // no progress for this long kills the task; 0 → DefaultStallAfter
	IdleWait   time.Duration // longest sleep between claims when idle; 0 → 5 s
}

// Defaults of a pool's Config, which the flags of the commands that run
// tasks (serve's in-process workers, herd worker, herd run-task) show.
const (
	DefaultHeartbeat  = 10 * time.Second  // how often running tasks report
	DefaultGrace      = 30 * time.Second  // how long running tasks may finish at shutdown
	DefaultStallAfter = 120 * time.Second // no ffmpeg progress for this long kills the task
)

// A claim that failed (the server away, the key refused) is tried again
// after firstClaimRetry, doubling up to maxClaimRetry.
const (
	firstClaimRetry = time.Second
	maxClaimRetry   = time.Minute
)

// Pool is a set of worker slots.
type Pool struct {
	q   Queue
	ex  Executor
	cfg Config
	log *slog.Logger
	obs Observer
}

// NewPool returns a pool; Run starts it.
func NewPool(q Queue, ex Executor, cfg Config, log *slog.Logger, obs Observer) *Pool {
	cfg.Slots = max(cfg.Slots, 1)
	cfg.Heartbeat = cmp.Or(cfg.Heartbeat, DefaultHeartbeat)
	cfg.Grace = cmp.Or(cfg.Grace, DefaultGrace)
	cfg.StallAfter = cmp.Or(cfg.StallAfter, DefaultStallAfter)
	cfg.IdleWait = cmp.Or(cfg.IdleWait, 5*time.Second)
	return &Pool{q: q, ex: ex, cfg: cfg, log: log.With("component", "worker", "worker", cfg.Name), obs: obs}
}

// Run claims and runs tasks until ctx ends. Then it stops claiming, lets
// running tasks finish for the grace period, and releases the rest.
func (p *Pool) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for i := range p.cfg.Slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.slot(ctx, fmt.Sprintf("%s%d", p.cfg.OwnerPrefix, i))
		}()
	}
	wg.Wait()
	return nil
}

func (p *Pool) slot(ctx context.Context, owner string) {
	failures := 0 // claims that failed in a row
	for ctx.Err() == nil {
		caps := p.cfg.Caps
		if p.cfg.ClaimCaps != nil {
			caps = p.cfg.ClaimCaps(caps)
		}
		c, err := p.q.Claim(ctx, owner, p.cfg.Name, caps)
		if err != nil {
			if ctx.Err() == nil {
				// Keep trying, ever more slowly: an admin may fix the key or the server.
				failures++
				delay := backoff.Delay(firstClaimRetry, maxClaimRetry, failures)
				p.log.Error("claim task", "err", err, "retry_in", delay)
				sleep(ctx, delay)
			}
			continue
		}
		failures = 0
		if c == nil {
			p.q.Wait(ctx, p.cfg.IdleWait)
			continue
		}
		if p.run(ctx, c) == OutcomeRequeued {
			// It could not start here now (GPU sessions busy): let sessions
			// free up, or another worker take it, before claiming again.
			sleep(ctx, 2*time.Second)
		}
	}
}

var (
	errLeaseLost = errors.New("lease lost")
	errShutdown  = errors.New("worker shutting down")
	errStalled   = errors.New("no progress")
)

// How a task run ended, as RunOne reports it.
const (
	OutcomeSucceeded    = "succeeded"
	OutcomeFailed       = "failed"        // reported to the server as a failure
	OutcomeLeaseLost    = "lease_lost"    // canceled, or taken over after a timeout
	OutcomeReleased     = "released"      // given back at shutdown
	OutcomeRequeued     = "requeued"      // given back unrun: it cannot start here now
	OutcomeReportFailed = "report_failed" // ended, but the server could not be told
)

// RunOne runs a task claimed elsewhere (by the Kubernetes dispatcher) with
// this pool's heartbeats, stall detection and shutdown grace, and says how
// it ended. shutdown starts the grace period.
func (p *Pool) RunOne(shutdown context.Context, c *job.Claimed) string { return p.run(shutdown, c) }

// run runs one claimed task, reports on it, and says how it ended.
func (p *Pool) run(shutdown context.Context, c *job.Claimed) (outcome string) {
	log := p.log.With("job_id", c.Job.ID, "task_id", c.Task.ID, "kind", c.Task.Kind, "attempt", c.Task.Attempt)
	log.Info("task started")
	start := time.Now()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)

	var (
		mu       sync.Mutex
		last     job.Progress
		reported bool // stall detection starts with the first progress report
		lastMove = time.Now()
	)
	report := func(pr job.Progress) {
		mu.Lock()
		defer mu.Unlock()
		if !reported || pr.Progress > last.Progress {
			lastMove = time.Now()
		}
		last, reported = pr, true
	}

	done := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { // heartbeats, stall detection, and the shutdown grace period
		defer bg.Done()
		hb := time.NewTicker(p.cfg.Heartbeat)
		defer hb.Stop()
		var grace <-chan time.Time
		sd := shutdown.Done()
		for {
			select {
			case <-done:
				return
			case <-sd:
				sd = nil
				log.Info("shutting down: letting the task finish", "grace", p.cfg.Grace)
				grace = time.After(p.cfg.Grace)
			case <-grace:
				cancel(errShutdown)
				return
			case <-hb.C:
				mu.Lock()
				pr, moved, watching := last, lastMove, reported
				mu.Unlock()
				// Once ffmpeg is done (progress 1) the upload that follows has no progress to show.
				if watching && pr.Progress < 1 && time.Since(moved) > p.cfg.StallAfter {
					cancel(errStalled)
					return
				}
				hctx, hcancel := context.WithTimeout(ctx, p.cfg.Heartbeat)
				err := p.q.Heartbeat(hctx, c.Lease, pr)
				hcancel()
				if errors.Is(err, job.ErrLeaseLost) {
					cancel(errLeaseLost)
					return
				}
				if err != nil && ctx.Err() == nil {
					log.Warn("heartbeat failed; will try again", "err", err)
				}
			}
		}
	}()

	res, err := p.execute(ctx, c, report, log)
	close(done)
	bg.Wait()

	rctx, rcancel := context.WithTimeout(context.WithoutCancel(shutdown), 30*time.Second)
	defer rcancel()
	outcome = OutcomeSucceeded
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, errLeaseLost), errors.Is(err, job.ErrLeaseLost):
		outcome = OutcomeLeaseLost
		log.Warn("lease lost (canceled, or taken over after a timeout); dropped the task")
	case err == nil:
		// Finished, even if the grace period ran out at the same moment.
		if rerr := p.q.Complete(rctx, c.Lease, res); rerr != nil {
			outcome = reportFailed(rerr)
			log.Error("report completion", "err", rerr)
		}
	case errors.Is(cause, errShutdown), errors.Is(err, job.ErrRequeue):
		outcome = OutcomeReleased
		if errors.Is(err, job.ErrRequeue) {
			outcome = OutcomeRequeued
		}
		if rerr := p.q.Release(rctx, c.Lease); rerr != nil {
			outcome = reportFailed(rerr)
			log.Error("release task", "err", rerr)
		} else if outcome == OutcomeRequeued {
			log.Info("gave the task back", "why", err)
		} else {
			log.Info("released the task at shutdown")
		}
	default:
		f := job.Failure{Message: job.UserMessage(err, fmt.Sprintf("the %s step failed unexpectedly; the server log has details", c.Task.Kind)), Commands: res.Commands}
		if errors.Is(cause, errStalled) {
			f.Message = fmt.Sprintf("ffmpeg made no progress for %s; the task was stopped and will be retried", p.cfg.StallAfter)
			f.Code = "stalled"
		} else if code, ok := job.IsPermanent(err); ok {
			f.Permanent, f.Code = true, code
		}
		outcome = OutcomeFailed
		// A file herd refuses is the input's fault, not the system's: a
		// warning, so alerts on errors stay about herd. Other permanent
		// failures (a lost source, no encoder) are errors.
		level := slog.LevelError
		if _, refused := errors.AsType[*media.RejectedError](err); refused || f.Code == "corrupt_input" || f.Code == "unplannable" {
			level = slog.LevelWarn
		}
		log.Log(rctx, level, "task failed", "err", err, "permanent", f.Permanent, "code", f.Code)
		if rerr := p.q.Fail(rctx, c.Lease, f); rerr != nil {
			outcome = reportFailed(rerr)
			log.Error("report failure", "err", rerr)
		}
	}
	if p.obs != nil {
		mu.Lock()
		speed := last.Speed
		mu.Unlock()
		p.obs.TaskFinished(c.Task.Kind, outcome, time.Since(start), speed)
	}
	log.Info("task ended", "outcome", outcome, "duration", time.Since(start).Round(time.Millisecond))
	return outcome
}

// execute runs the task, turning a panic in it (planning, building an argv,
// running ffmpeg) into a permanent failure of this task alone: one bad task
// never takes the worker, the server or run-task down. Retrying would panic
// the same way.
func (p *Pool) execute(ctx context.Context, c *job.Claimed, report func(job.Progress), log *slog.Logger) (res job.Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("task panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = job.Permanent("internal_error", job.Userf(fmt.Errorf("panic: %v", r),
				"herd hit an internal error in the %s step (a bug: the worker's log has the details; please report it)", c.Task.Kind))
		}
	}()
	return p.ex.Execute(ctx, c, report)
}

// reportFailed is the outcome of a task whose end the server refused or
// never heard: the lease was gone by then, or the server could not be told.
func reportFailed(err error) string {
	if errors.Is(err, job.ErrLeaseLost) {
		return OutcomeLeaseLost
	}
	return OutcomeReportFailed
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
