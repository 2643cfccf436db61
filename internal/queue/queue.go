// Package queue connects executors to the store: it wakes idle workers the
// moment work appears (no polling tick), hands in-process workers their
// leases, and reaps the leases of workers that stopped answering. It decides
// nothing about media.
package queue

import (
	"cmp"
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/store"
)

// Signal wakes everyone waiting for new work. The zero value is ready to use.
type Signal struct {
	mu sync.Mutex
	ch chan struct{}
}

// C returns a channel that is closed at the next Kick.
func (s *Signal) C() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// Kick wakes every current waiter.
func (s *Signal) Kick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

// Config tunes leases.
type Config struct {
	LeaseTTL time.Duration // 0 → DefaultLeaseTTL
	Backoff  time.Duration // base retry delay; 0 → 5 s
	Now      func() time.Time
}

// DefaultLeaseTTL is how long a task lease lasts without a heartbeat.
const DefaultLeaseTTL = 30 * time.Second

func (c Config) withDefaults() Config {
	c.LeaseTTL = cmp.Or(c.LeaseTTL, DefaultLeaseTTL)
	c.Backoff = cmp.Or(c.Backoff, 5*time.Second)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// LeaseStore is what the queue needs from the store: claims, the reports
// on a lease, and the reaping of expired ones.
type LeaseStore interface {
	Claim(ctx context.Context, req store.ClaimRequest) (*job.Claimed, error)
	NextWake(ctx context.Context) (time.Time, error)
	Heartbeat(ctx context.Context, l job.Lease, p job.Progress, now time.Time, ttl time.Duration) error
	Complete(ctx context.Context, l job.Lease, r job.Result, now time.Time) error
	Fail(ctx context.Context, l job.Lease, f job.Failure, now time.Time) error
	Release(ctx context.Context, l job.Lease, now time.Time) error
	ReapExpired(ctx context.Context, now time.Time, backoff time.Duration) (int, error)
}

// Queue is the store-backed queue used by the server and its in-process workers.
type Queue struct {
	st     LeaseStore
	cfg    Config
	signal *Signal
}

// New returns a Queue; sig is shared with whoever creates work.
func New(st LeaseStore, sig *Signal, cfg Config) *Queue {
	return &Queue{st: st, cfg: cfg.withDefaults(), signal: sig}
}

// Claim leases a runnable task of any kind, or returns nil.
func (q *Queue) Claim(ctx context.Context, owner, worker string, caps []string) (*job.Claimed, error) {
	return q.ClaimKinds(ctx, owner, worker, caps, nil)
}

// ClaimKinds is Claim limited to tasks of the given kinds (nil: any kind;
// empty: none): what a remote worker of an older protocol version may run.
func (q *Queue) ClaimKinds(ctx context.Context, owner, worker string, caps []string, kinds []job.Kind) (*job.Claimed, error) {
	return q.st.Claim(ctx, store.ClaimRequest{Owner: owner, Worker: worker, Caps: caps, Kinds: kinds, Now: q.cfg.Now(), TTL: q.cfg.LeaseTTL})
}

// Wait blocks until work may be claimable: a Kick, the next backoff expiring, or max.
func (q *Queue) Wait(ctx context.Context, limit time.Duration) {
	c := q.signal.C()
	d := limit
	// A queued task whose time has come but that this caller did not claim
	// needs something it lacks: wait for a Kick, not in a loop.
	if next, err := q.st.NextWake(ctx); err == nil && next.After(time.Now()) {
		d = min(d, time.Until(next))
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-c:
	case <-t.C:
	}
}

// Heartbeat extends a lease and records progress.
func (q *Queue) Heartbeat(ctx context.Context, l job.Lease, p job.Progress) error {
	return q.st.Heartbeat(ctx, l, p, q.cfg.Now(), q.cfg.LeaseTTL)
}

// Complete finishes a task and wakes workers for the tasks it unblocked.
func (q *Queue) Complete(ctx context.Context, l job.Lease, r job.Result) error {
	err := q.st.Complete(ctx, l, r, q.cfg.Now())
	q.signal.Kick()
	return err
}

// Fail records a failed attempt.
func (q *Queue) Fail(ctx context.Context, l job.Lease, f job.Failure) error {
	f.Backoff = cmp.Or(f.Backoff, q.cfg.Backoff)
	err := q.st.Fail(ctx, l, f, q.cfg.Now())
	q.signal.Kick()
	return err
}

// Release gives a task back.
func (q *Queue) Release(ctx context.Context, l job.Lease) error {
	err := q.st.Release(ctx, l, q.cfg.Now())
	q.signal.Kick()
	return err
}

// Reaper requeues the tasks of workers whose leases expired.
type Reaper struct {
	q      *Queue
	log    *slog.Logger
	every  time.Duration
	onReap func(n int)
}

// NewReaper checks leases every ttl/3. onReap (may be nil) is told how many it reaped.
func NewReaper(q *Queue, log *slog.Logger, onReap func(int)) *Reaper {
	return &Reaper{q: q, log: log.With("component", "reaper"), every: q.cfg.LeaseTTL / 3, onReap: onReap}
}

// Run reaps until ctx ends.
func (r *Reaper) Run(ctx context.Context) error {
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		n, err := r.q.st.ReapExpired(ctx, r.q.cfg.Now(), r.q.cfg.Backoff)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Error("reap expired leases", "err", err)
			}
			continue
		}
		if n > 0 {
			r.log.Warn("requeued tasks whose worker stopped answering", "tasks", n)
			if r.onReap != nil {
				r.onReap(n)
			}
			r.q.signal.Kick()
		}
	}
}
