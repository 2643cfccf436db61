package pipeline

import (
	"context"
	"errors"
	"os"
	"slices"
	"time"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/live"
	"github.com/herdhq/herd/internal/media"
)

// LiveSink takes the segments a running hls encode finishes, for the job's
// live playlists (package live): the server's hub for in-process workers,
// the worker API for remote ones.
type LiveSink interface {
	// HandOver lists the finished media segment name in dir, with its init
	// segment beside it, as a file of the task c holds, made for step.
	// job.ErrLeaseLost when c lost the task.
	HandOver(ctx context.Context, c *job.Claimed, step, dir, name string) error
}

// WithLive hands the segments of running hls encodes to s as ffmpeg
// finishes them.
func (e *Executor) WithLive(s LiveSink) *Executor {
	e.live = s
	return e
}

// handOverEvery is how often a running encode's folder is looked at for
// segments ffmpeg finished (it renames each into place when it is whole).
const handOverEvery = 250 * time.Millisecond

// lastHandOver bounds handing over what is left once ffmpeg ended: the
// task's own result must not wait long on a preview.
const lastHandOver = time.Minute

// handingOver runs run, which has ffmpeg write step's segments into dir,
// and meanwhile hands every segment it finishes to the live sink, in
// number order; once run succeeded, the last ones too. A hand-over that
// fails stops the hand-overs of this attempt, never the task: the live
// playlist is a preview, the verified outputs are what count.
func (e *Executor) handingOver(ctx context.Context, c *job.Claimed, plan *media.Plan, step, dir string, run func() ([][]string, error)) ([][]string, error) {
	if e.live == nil || !live.Hands(plan, c.Task) {
		return run()
	}
	h := &handOver{e: e, c: c, plan: plan, step: step, dir: dir, handed: map[string]bool{}}
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(handOverEvery)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
				h.scan(hctx)
			}
		}
	}()
	ran, err := run()
	// A hand-over under way is cut short (a server that is away is not
	// waited for here); the last scan sends it again.
	cancel()
	<-done
	if err == nil {
		last, cancel := context.WithTimeout(ctx, lastHandOver)
		h.scan(last)
		cancel()
	}
	return ran, err
}

// handOver is one attempt's hand-overs.
type handOver struct {
	e       *Executor
	c       *job.Claimed
	plan    *media.Plan
	step    string
	dir     string
	handed  map[string]bool
	stopped bool
}

// scan hands over the segments finished since the last scan.
func (h *handOver) scan(ctx context.Context) {
	if h.stopped {
		return
	}
	entries, err := os.ReadDir(h.dir)
	if err != nil {
		return // not made yet
	}
	var names []string
	for _, en := range entries {
		if n := en.Name(); !h.handed[n] && live.Handed(h.plan, h.c.Task, n) {
			names = append(names, n)
		}
	}
	slices.SortFunc(names, live.SegmentOrder)
	for _, n := range names {
		if err := h.e.live.HandOver(ctx, h.c, h.step, h.dir, n); err != nil {
			if ctx.Err() != nil {
				return // cut short: handing it over again is harmless (the first one listed stays)
			}
			h.stopped = true
			if !errors.Is(err, job.ErrLeaseLost) {
				h.e.log.Warn("could not hand a segment to the live playlist; the job's live playlist stops here, its outputs are not affected",
					"job_id", h.c.Job.ID, "task_id", h.c.Task.ID, "segment", n, "err", err)
			}
			return
		}
		h.handed[n] = true
	}
}
