package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/herdhq/herd/internal/job"
)

// liveHub runs one poller per distinct live view (a view and its query: the
// dashboard, the workers page, one job page per job id, one job list per
// filter) and fans each change out to every stream open on it, so ten open
// tabs cost the store what one does. A poller starts with its first
// subscriber and stops when its last one leaves.
type liveHub struct {
	every time.Duration // how often a poller reads its view
	log   *slog.Logger

	mu    sync.Mutex
	polls map[string]*livePoll
}

// liveView reads one view from the store.
type liveView func(context.Context) (any, error)

// livePoll is one view's poller and the streams it feeds.
type livePoll struct {
	subs   map[*liveSub]struct{}
	last   *liveEvent // the latest event, for streams that join later
	cancel context.CancelFunc
	done   chan struct{} // closed when the poller has returned
}

// liveEvent is a view's JSON, or gone once what it shows no longer exists.
type liveEvent struct {
	data []byte
	gone bool
}

// liveSub is one stream's mailbox. It holds only the latest event: a stream
// that reads slowly skips the states it missed (it only ever needs the
// newest view) and never holds up the poller or the other streams.
type liveSub struct{ ch chan liveEvent }

// offer puts ev in the mailbox, replacing an event not yet read. Only
// callers holding liveHub.mu send, so the loop ends at its second turn.
func (s *liveSub) offer(ev liveEvent) {
	for {
		select {
		case s.ch <- ev:
			return
		default:
		}
		select {
		case <-s.ch: // stale: the reader has not taken it yet
		default:
		}
	}
}

func newLiveHub(every time.Duration, log *slog.Logger) *liveHub {
	return &liveHub{every: every, log: log, polls: map[string]*livePoll{}}
}

// subscribe joins the poller for key, starting it (with view) if none
// runs. The mailbox receives the latest event at once when the poller has
// one. leave must be called once the stream ends.
func (h *liveHub) subscribe(key string, view liveView) (sub *liveSub, leave func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.polls[key]
	if p == nil {
		// The poller outlives the request that started it: it serves every
		// stream on this view and ends when the last one leaves.
		ctx, cancel := context.WithCancel(context.Background())
		p = &livePoll{subs: map[*liveSub]struct{}{}, cancel: cancel, done: make(chan struct{})}
		h.polls[key] = p
		go h.run(ctx, key, p, view)
	}
	sub = &liveSub{ch: make(chan liveEvent, 1)}
	p.subs[sub] = struct{}{}
	if p.last != nil {
		sub.offer(*p.last)
	}
	var once sync.Once
	return sub, func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			delete(p.subs, sub)
			if len(p.subs) == 0 {
				if h.polls[key] == p {
					delete(h.polls, key)
				}
				p.cancel()
			}
		})
	}
}

// run reads the view every h.every and sends it to the subscribers when it
// changed; it sends nothing while nothing changes.
func (h *liveHub) run(ctx context.Context, key string, p *livePoll, view liveView) {
	defer close(p.done)
	tick := time.NewTicker(h.every)
	defer tick.Stop()
	var last []byte
	for {
		v, err := view(ctx)
		switch {
		case errors.Is(err, job.ErrNotFound):
			h.publish(key, p, liveEvent{gone: true})
			return
		case err != nil && ctx.Err() == nil:
			h.log.Warn("live view failed", "view", key, "err", err)
		case err == nil:
			b, err := json.Marshal(v)
			if err != nil {
				h.log.Warn("live view failed", "view", key, "err", err)
				break
			}
			if !bytes.Equal(b, last) {
				last = b
				h.publish(key, p, liveEvent{data: b})
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// publish sends ev to every subscriber without waiting on any. A gone view
// leaves the hub at once, so a later stream starts a fresh poller.
func (h *liveHub) publish(key string, p *livePoll, ev liveEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p.last = &ev
	for s := range p.subs {
		s.offer(ev)
	}
	if ev.gone && h.polls[key] == p {
		delete(h.polls, key)
	}
}

// pollers is how many pollers run now (for tests).
func (h *liveHub) pollers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.polls)
}
