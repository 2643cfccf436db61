// Package patience bounds how long an HTTP client may hold herd's server.
// A request's header must arrive within ReadHeader; a keep-alive connection
// idle for Idle is closed; and a request body or a response must keep moving
// at MinRate bytes per second on average, with Stall of slack: a client that
// trickles a byte every few seconds, or stops reading what it asked for, is
// cut off.
//
// Unlike a server-wide ReadTimeout or WriteTimeout, nothing here limits how
// long a request may take: a 2 GiB upload, a worker's PUT or a long download
// never times out while it moves, and an event stream or a long-poll that
// waits between writes is not cut, because only time spent waiting on the
// client counts, never time the handler takes. The deadlines are set through
// http.ResponseController on each read and write.
//
// It decides nothing about what a handler does with a request.
package patience

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// Config says how patient the server is. Zero fields take the defaults.
type Config struct {
	ReadHeader time.Duration // the whole request header (default 10s)
	Idle       time.Duration // a keep-alive connection between requests (default 2m)
	Stall      time.Duration // how far a body or response may fall behind MinRate (default 30s)
	MinRate    int64         // bytes per second a body or response must average (default 4096)
}

// Defaults.
const (
	DefaultReadHeader = 10 * time.Second
	DefaultIdle       = 2 * time.Minute
	DefaultStall      = 30 * time.Second
	DefaultMinRate    = 4 << 10
)

func (c Config) withDefaults() Config {
	c.ReadHeader = cmp.Or(c.ReadHeader, DefaultReadHeader)
	c.Idle = cmp.Or(c.Idle, DefaultIdle)
	c.Stall = cmp.Or(c.Stall, DefaultStall)
	c.MinRate = cmp.Or(c.MinRate, DefaultMinRate)
	return c
}

// Validate rejects settings that would make every request fail.
func (c Config) Validate() error {
	switch {
	case c.ReadHeader < 0 || c.Idle < 0 || c.Stall < 0:
		return errors.New("--read-header-timeout, --idle-timeout and --slow-transfer-timeout must not be negative")
	case c.MinRate < 0:
		return fmt.Errorf("--min-transfer-rate %d: must not be negative", c.MinRate)
	}
	return nil
}

// Server returns an http.Server that serves h with these bounds.
func (c Config) Server(h http.Handler) *http.Server {
	c = c.withDefaults()
	return &http.Server{Handler: Handler(h, c), ReadHeaderTimeout: c.ReadHeader, IdleTimeout: c.Idle}
}

// Handler wraps h so that each request's body and response must keep moving.
// Server does this already; Handler is for servers built otherwise.
func Handler(h http.Handler, c Config) http.Handler {
	c = c.withDefaults()
	rate := float64(c.MinRate)
	// A write is cut into pieces a client at MinRate takes half the slack
	// to accept, so that one big Write does not need more than Stall.
	piece := min(max(int(rate*c.Stall.Seconds()/2), 4<<10), 1<<20)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		// A deadline left by the previous request on this connection must
		// not cut this one.
		_ = rc.SetWriteDeadline(time.Time{})
		pw := &writer{ResponseWriter: w, rc: rc, m: meter{max: c.Stall, rate: rate, left: c.Stall}, piece: piece}
		if r.Body != nil && r.Body != http.NoBody {
			pw.body = &body{ReadCloser: r.Body, rc: rc, m: meter{max: c.Stall, rate: rate, left: c.Stall}}
			r.Body = pw.body
		}
		h.ServeHTTP(pw, r)
		pw.finish()
	})
}

// meter is a bucket of patience: time spent waiting on the client takes
// from it, each byte that moves puts 1/rate seconds back, and it never holds
// more than max, so a fast start buys no right to trickle later.
type meter struct {
	max  time.Duration
	rate float64 // bytes per second
	left time.Duration
}

func (m *meter) spend(took time.Duration, n int) {
	m.left = min(m.max, m.left-took+time.Duration(float64(n)/m.rate*float64(time.Second)))
}

// earliest is the earlier of two deadlines, zero meaning none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// body is a request body whose reads must keep up with the meter. Once it
// has ended, reading is over: net/http then reads in the background to
// notice a client that goes away, and a read deadline there would cancel a
// request whose handler is still working (a long-poll), so the deadline is
// cleared and a handler's later ones are ignored.
type body struct {
	io.ReadCloser
	rc *http.ResponseController

	mu    sync.Mutex
	m     meter
	limit time.Time // the handler's own read deadline (zero: none)
	last  time.Time // the deadline set for the read in progress
	ended bool
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.ended {
		b.mu.Unlock()
		return b.ReadCloser.Read(p)
	}
	start := time.Now()
	b.last = start.Add(b.m.left)
	_ = b.rc.SetReadDeadline(earliest(b.last, b.limit))
	b.mu.Unlock()

	n, err := b.ReadCloser.Read(p)

	b.mu.Lock()
	defer b.mu.Unlock()
	b.m.spend(time.Since(start), n)
	if errors.Is(err, io.EOF) {
		b.ended = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// setLimit records a handler's read deadline (tusd sets one after each read
// and the present time to abort one); it can shorten the meter's, not extend it.
func (b *body) setLimit(t time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended {
		return nil
	}
	b.limit = t
	return b.rc.SetReadDeadline(earliest(b.last, t))
}

// writer is a response whose writes must keep up with the meter.
type writer struct {
	http.ResponseWriter
	rc    *http.ResponseController
	body  *body // nil when the request has none
	piece int

	mu    sync.Mutex
	m     meter
	limit time.Time // the handler's own write deadline (zero: none)
}

func (w *writer) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return w.ResponseWriter.Write(p) // may send the header; nothing to time
	}
	done := 0
	for len(p) > 0 {
		k := min(len(p), w.piece)
		n, err := w.timed(func() (int, error) { return w.ResponseWriter.Write(p[:k]) })
		done += n
		if err != nil {
			return done, err
		}
		p = p[k:]
	}
	return done, nil
}

// FlushError sends what is buffered, under the meter's deadline.
func (w *writer) FlushError() error {
	_, err := w.timed(func() (int, error) { return 0, w.rc.Flush() })
	return err
}

// Flush is FlushError for callers that look for an http.Flusher.
func (w *writer) Flush() { _ = w.FlushError() }

func (w *writer) timed(op func() (int, error)) (int, error) {
	w.mu.Lock()
	start := time.Now()
	_ = w.rc.SetWriteDeadline(earliest(start.Add(w.m.left), w.limit))
	w.mu.Unlock()
	n, err := op()
	w.mu.Lock()
	w.m.spend(time.Since(start), n)
	w.mu.Unlock()
	return n, err
}

// SetWriteDeadline records a handler's write deadline (an event stream's
// bound on a client that stops reading); it can shorten the meter's, not extend it.
func (w *writer) SetWriteDeadline(t time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.limit = t
	return w.rc.SetWriteDeadline(earliest(time.Now().Add(w.m.left), t))
}

// SetReadDeadline is the handler's read deadline for the body; once the
// body has ended (or when there is none) it does not matter and is ignored.
func (w *writer) SetReadDeadline(t time.Time) error {
	if w.body == nil {
		return nil
	}
	return w.body.setLimit(t)
}

// Unwrap lets http.ResponseController reach the connection (Hijack, EnableFullDuplex).
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// finish bounds what net/http does after the handler: flush the buffered
// end of the response, and read (to discard) what is left of an unread body.
func (w *writer) finish() {
	w.mu.Lock()
	_ = w.rc.SetWriteDeadline(time.Now().Add(max(w.m.left, 0)))
	w.mu.Unlock()
	if b := w.body; b != nil {
		b.mu.Lock()
		if !b.ended {
			_ = b.rc.SetReadDeadline(time.Now().Add(max(b.m.left, 0)))
		}
		b.mu.Unlock()
	}
}
