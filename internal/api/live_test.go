package api_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/api"
	"github.com/herdhq/herd/internal/apikey"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/testenv"
)

// countingStore counts the dashboard's reads of the queue statistics.
type countingStore struct {
	store.Store
	stats atomic.Int64
}

func (c *countingStore) Stats(ctx context.Context) (store.Stats, error) {
	c.stats.Add(1)
	return c.Store.Stats(ctx)
}

// TestLiveStreamsShareOnePoller: ten open dashboard streams cost the store
// what one does, and the poller stops once the last stream closes.
func TestLiveStreamsShareOnePoller(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testenv.SQLite(t)
	require.NoError(t, st.CreateKey(ctx, store.Key{ID: "k1", Kind: "admin", Hash: apikey.Hash(adminKey), CreatedAt: time.Now()}))
	cs := &countingStore{Store: st}
	s := api.New(api.Deps{Store: cs, Profiles: profile.Builtin(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	const every = 20 * time.Millisecond
	s.SetLiveEvery(every)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)

	const streams = 10
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var bodies []io.Closer
	for range streams {
		req, err := http.NewRequestWithContext(sctx, "GET", srv.URL+"/api/v1/events?view=dashboard", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+adminKey)
		resp, err := http.DefaultClient.Do(req) //nolint:bodyclose // closed below, through bodies
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		bodies = append(bodies, resp.Body)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() && !strings.HasPrefix(sc.Text(), "event: dashboard") {
		}
		require.NoError(t, sc.Err())
	}
	require.Equal(t, 1, s.LivePollers())
	start, before := time.Now(), cs.stats.Load()
	time.Sleep(25 * every)
	reads := cs.stats.Load() - before
	// One poller reads once per period; one per stream would read ten times as often.
	require.LessOrEqual(t, reads, int64(time.Since(start)/every)+2, "%d streams made %d reads in %s", streams, reads, time.Since(start))

	for _, b := range bodies {
		require.NoError(t, b.Close())
	}
	require.Eventually(t, func() bool { return s.LivePollers() == 0 }, 10*time.Second, 5*time.Millisecond)
	time.Sleep(5 * every) // a read in flight when the last stream left
	after := cs.stats.Load()
	time.Sleep(5 * every)
	require.Equal(t, after, cs.stats.Load(), "the store was read after every stream closed")
}
