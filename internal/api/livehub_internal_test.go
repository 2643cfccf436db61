package api

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// counter is a view that changes at every read and counts the reads.
type counter struct{ n atomic.Int64 }

func (c *counter) view(context.Context) (any, error) { return c.n.Add(1), nil }

func newTestHub() *liveHub {
	return newLiveHub(time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// TestLiveHubLastLeaverStopsPoller: streams on one view share one poller,
// and it stops (no more reads) once the last of them leaves.
func TestLiveHubLastLeaverStopsPoller(t *testing.T) {
	t.Parallel()
	h := newTestHub()
	var c counter
	_, leaveA := h.subscribe("v", c.view)
	_, leaveB := h.subscribe("v", c.view)
	require.Equal(t, 1, h.pollers())
	h.mu.Lock()
	p := h.polls["v"]
	h.mu.Unlock()
	leaveA()
	require.Equal(t, 1, h.pollers(), "one stream is still open")
	leaveB()
	leaveB() // twice is harmless
	require.Equal(t, 0, h.pollers())
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the poller went on after its last stream left")
	}
	n := c.n.Load()
	time.Sleep(20 * time.Millisecond)
	require.Equal(t, n, c.n.Load(), "the view was read after its poller stopped")
}

// TestLiveHubSlowReaderDoesNotStallOthers: a stream that never reads holds
// one (the newest) event, while another stream on the same view goes on
// receiving every change.
func TestLiveHubSlowReaderDoesNotStallOthers(t *testing.T) {
	t.Parallel()
	h := newTestHub()
	var c counter
	slow, leaveSlow := h.subscribe("v", c.view)
	defer leaveSlow()
	fast, leaveFast := h.subscribe("v", c.view)
	defer leaveFast()
	got, prev := 0, int64(0)
	deadline := time.After(20 * time.Second)
	for got < 50 {
		select {
		case ev := <-fast.ch:
			n, err := strconv.ParseInt(string(ev.data), 10, 64)
			require.NoError(t, err)
			require.Greater(t, n, prev, "events arrive in order")
			prev = n
			got++
		case <-deadline:
			t.Fatalf("the fast stream got %d events while the slow one read nothing", got)
		}
	}
	require.Len(t, slow.ch, 1, "the slow stream holds just the latest event")
	ev := <-slow.ch
	n, err := strconv.ParseInt(string(ev.data), 10, 64)
	require.NoError(t, err)
	require.Greater(t, n, int64(1), "the slow stream's event was replaced by newer ones, not queued")
}

// TestLiveHubLateJoinerGetsLatest: a stream that opens on a running view
// gets its current state at once, without a read of its own.
func TestLiveHubLateJoinerGetsLatest(t *testing.T) {
	t.Parallel()
	h := newLiveHub(time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var c counter
	first, leave := h.subscribe("v", c.view)
	defer leave()
	ev := <-first.ch
	second, leave2 := h.subscribe("v", c.view)
	defer leave2()
	require.Equal(t, ev, <-second.ch)
	require.Equal(t, int64(1), c.n.Load())
}
