package worker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/queue"
	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/testenv"
	"github.com/herdhq/herd/internal/worker"
)

// execFunc adapts a function to worker.Executor.
type execFunc func(ctx context.Context, c *job.Claimed, report func(job.Progress)) (job.Result, error)

func (f execFunc) Execute(ctx context.Context, c *job.Claimed, report func(job.Progress)) (job.Result, error) {
	return f(ctx, c, report)
}

func setup(t *testing.T) (store.Store, *queue.Queue, string) {
	t.Helper()
	st := testenv.SQLite(t)
	ctx := context.Background()
	a, err := st.PutAsset(ctx, job.Asset{ID: "a1", Name: "x", Size: 1, SHA256: "s", Key: "sources/s", CreatedAt: time.Now()})
	require.NoError(t, err)
	j := job.Job{ID: job.NewID("j"), Profile: "p", ProfileVersion: 1, IdempotencyKey: "k", Source: job.Source{AssetID: a.ID}}
	_, _, err = st.CreateJob(ctx, j, []job.Task{{ID: job.NewID("t"), Kind: job.KindEncode, MaxAttempts: 3}}, time.Now())
	require.NoError(t, err)
	return st, queue.New(st, &queue.Signal{}, queue.Config{LeaseTTL: 2 * time.Second, Backoff: time.Hour}), j.ID
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func task(t *testing.T, st store.Store, jobID string) job.Task {
	t.Helper()
	ts, err := st.Tasks(context.Background(), jobID)
	require.NoError(t, err)
	return ts[0]
}

func TestCancelStopsRunningTask(t *testing.T) {
	t.Parallel()
	st, q, jobID := setup(t)
	var started, stopped atomic.Bool
	ex := execFunc(func(ctx context.Context, _ *job.Claimed, report func(job.Progress)) (job.Result, error) {
		started.Store(true)
		report(job.Progress{Progress: 0.1})
		<-ctx.Done()
		stopped.Store(true)
		return job.Result{}, ctx.Err()
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := worker.NewPool(q, ex, worker.Config{Name: "w", OwnerPrefix: "w/", Heartbeat: 20 * time.Millisecond}, quiet, nil)
	go func() { _ = pool.Run(ctx) }()
	waitUntil(t, "task start", started.Load)
	_, err := st.CancelJob(context.Background(), jobID, time.Now())
	require.NoError(t, err)
	waitUntil(t, "executor canceled by lost lease", stopped.Load)
	require.Equal(t, job.TaskCanceled, task(t, st, jobID).State)
}

func TestStalledTaskIsKilledAndRetried(t *testing.T) {
	t.Parallel()
	st, q, jobID := setup(t)
	ex := execFunc(func(ctx context.Context, _ *job.Claimed, report func(job.Progress)) (job.Result, error) {
		report(job.Progress{Progress: 0.43})
		<-ctx.Done() // "stuck at 43 %"
		return job.Result{}, ctx.Err()
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := worker.NewPool(q, ex, worker.Config{Name: "w", OwnerPrefix: "w/", Heartbeat: 20 * time.Millisecond, StallAfter: 200 * time.Millisecond}, quiet, nil)
	go func() { _ = pool.Run(ctx) }()
	waitUntil(t, "stall detected", func() bool { tk := task(t, st, jobID); return tk.State == job.TaskQueued && tk.Attempt == 1 })
	tk := task(t, st, jobID)
	require.Contains(t, tk.Error, "no progress")
}

func TestShutdownReleasesAfterGrace(t *testing.T) {
	t.Parallel()
	st, q, jobID := setup(t)
	var started atomic.Bool
	ex := execFunc(func(ctx context.Context, _ *job.Claimed, _ func(job.Progress)) (job.Result, error) {
		started.Store(true)
		<-ctx.Done()
		return job.Result{}, ctx.Err()
	})
	ctx, cancel := context.WithCancel(context.Background())
	pool := worker.NewPool(q, ex, worker.Config{Name: "w", OwnerPrefix: "w/", Grace: 50 * time.Millisecond}, quiet, nil)
	done := make(chan struct{})
	go func() { _ = pool.Run(ctx); close(done) }()
	waitUntil(t, "task start", started.Load)
	cancel()
	<-done
	tk := task(t, st, jobID)
	require.Equal(t, job.TaskQueued, tk.State)
	require.Equal(t, 0, tk.Attempt)
}

func TestShutdownLetsFastTaskFinish(t *testing.T) {
	t.Parallel()
	st, q, jobID := setup(t)
	release := make(chan struct{})
	var started atomic.Bool
	ex := execFunc(func(ctx context.Context, _ *job.Claimed, _ func(job.Progress)) (job.Result, error) {
		started.Store(true)
		select {
		case <-release:
			return job.Result{}, nil
		case <-ctx.Done():
			return job.Result{}, errors.New("killed too early")
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	pool := worker.NewPool(q, ex, worker.Config{Name: "w", OwnerPrefix: "w/", Grace: time.Minute}, quiet, nil)
	done := make(chan struct{})
	go func() { _ = pool.Run(ctx); close(done) }()
	waitUntil(t, "task start", started.Load)
	cancel()
	close(release)
	<-done
	require.Equal(t, job.TaskSucceeded, task(t, st, jobID).State)
}

func TestPermanentErrorFailsJobAtOnce(t *testing.T) {
	t.Parallel()
	st, q, jobID := setup(t)
	ex := execFunc(func(context.Context, *job.Claimed, func(job.Progress)) (job.Result, error) {
		return job.Result{}, job.Permanent("no_video", job.Userf(errors.New("/secret/path: no stream"), "the file has no video stream"))
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := worker.NewPool(q, ex, worker.Config{Name: "w", OwnerPrefix: "w/"}, quiet, nil)
	go func() { _ = pool.Run(ctx) }()
	waitUntil(t, "job failed", func() bool {
		j, err := st.GetJob(context.Background(), jobID)
		return err == nil && j.State == job.Failed
	})
	j, err := st.GetJob(context.Background(), jobID)
	require.NoError(t, err)
	require.Equal(t, "the file has no video stream", j.Error, "users see the safe message, not the path")
	require.Equal(t, "no_video", j.ErrorCode)
}

func TestRequeueGivesTaskBackUnrun(t *testing.T) {
	t.Parallel()
	st, q, jobID := setup(t)
	var tries atomic.Int32
	ex := execFunc(func(context.Context, *job.Claimed, func(job.Progress)) (job.Result, error) {
		tries.Add(1)
		return job.Result{}, fmt.Errorf("all sessions busy: %w", job.ErrRequeue)
	})
	ctx, cancel := context.WithCancel(context.Background())
	pool := worker.NewPool(q, ex, worker.Config{Name: "w", OwnerPrefix: "w/"}, quiet, nil)
	done := make(chan struct{})
	go func() { _ = pool.Run(ctx); close(done) }()
	waitUntil(t, "first try", func() bool { return tries.Load() >= 1 })
	cancel()
	<-done
	tk := task(t, st, jobID)
	require.Equal(t, job.TaskQueued, tk.State)
	require.Zero(t, tk.Attempt, "giving a task back uses no attempt")
}

// TestOutcomeWhenReportFails: a task whose end cannot be reported says so
// (herd run-task exits 5, or 3 when the lease was gone), whether it
// succeeded, failed or was given back.
func TestOutcomeWhenReportFails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		result error                                      // what the task returns
		before func(store.Store, *queue.Queue, job.Lease) // what happens first
		want   string
	}{
		{"succeeded, database gone", nil, func(st store.Store, _ *queue.Queue, _ job.Lease) { _ = st.Close() }, worker.OutcomeReportFailed},
		{"failed, database gone", errors.New("boom"), func(st store.Store, _ *queue.Queue, _ job.Lease) { _ = st.Close() }, worker.OutcomeReportFailed},
		{"given back, database gone", job.ErrRequeue, func(st store.Store, _ *queue.Queue, _ job.Lease) { _ = st.Close() }, worker.OutcomeReportFailed},
		{"failed, lease taken", errors.New("boom"), func(_ store.Store, q *queue.Queue, l job.Lease) { _ = q.Release(context.Background(), l) }, worker.OutcomeLeaseLost},
		{"succeeded, lease taken", nil, func(_ store.Store, q *queue.Queue, l job.Lease) { _ = q.Release(context.Background(), l) }, worker.OutcomeLeaseLost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, q, _ := setup(t)
			ctx := context.Background()
			c, err := q.Claim(ctx, "w/1", "w", nil)
			require.NoError(t, err)
			require.NotNil(t, c)
			ex := execFunc(func(context.Context, *job.Claimed, func(job.Progress)) (job.Result, error) {
				tc.before(st, q, c.Lease)
				return job.Result{}, tc.result
			})
			pool := worker.NewPool(q, ex, worker.Config{Name: "w", OwnerPrefix: "w/", Heartbeat: time.Hour}, quiet, nil)
			require.Equal(t, tc.want, pool.RunOne(ctx, c))
		})
	}
}

// A task that panics fails alone, permanently, with a message that says it
// is a bug; the pool goes on to run the next task.
func TestPanicFailsOnlyThatTask(t *testing.T) {
	t.Parallel()
	st, q, jobID := setup(t)
	ctx := context.Background()
	other := job.Job{ID: job.NewID("j"), Profile: "p", ProfileVersion: 1, IdempotencyKey: "k2", Source: job.Source{AssetID: "a1"}}
	_, _, err := st.CreateJob(ctx, other, []job.Task{{ID: job.NewID("t"), Kind: job.KindProbe, MaxAttempts: 3}}, time.Now())
	require.NoError(t, err)
	ex := execFunc(func(_ context.Context, c *job.Claimed, _ func(job.Progress)) (job.Result, error) {
		if c.Task.Kind == job.KindEncode {
			var cols int
			_ = 10 / cols // what an unchecked sprite geometry would do
		}
		return job.Result{}, nil
	})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pool := worker.NewPool(q, ex, worker.Config{Name: "w", OwnerPrefix: "w/"}, quiet, nil)
	go func() { _ = pool.Run(rctx) }()
	waitUntil(t, "both tasks ended", func() bool {
		return task(t, st, jobID).State == job.TaskFailed && task(t, st, other.ID).State == job.TaskSucceeded
	})
	tk := task(t, st, jobID)
	require.Equal(t, 1, tk.Attempt)
	require.Contains(t, tk.Error, "internal error in the encode step")
	j, err := st.GetJob(ctx, jobID)
	require.NoError(t, err)
	require.Equal(t, "internal_error", j.ErrorCode)
}
