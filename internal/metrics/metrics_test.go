package metrics_test

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/metrics"
	"github.com/herdhq/herd/internal/store"
)

// countingStats is a store that counts how often its numbers are read.
type countingStats struct {
	store.Store
	n atomic.Int32
}

func (c *countingStats) Stats(context.Context) (store.Stats, error) {
	c.n.Add(1)
	return store.Stats{JobsByState: map[job.State]int{job.Queued: 3}, QueueByProfile: map[string]int{"web-hls": 2}, EncodeBacklog: 42}, nil
}

// /metrics needs no key, so a flood of scrapes must not become a flood of
// store queries: the numbers are read once and shared for a few seconds.
func TestScrapesShareTheStoreNumbers(t *testing.T) {
	t.Parallel()
	st := &countingStats{}
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewStoreCollector(st, slog.New(slog.NewTextHandler(io.Discard, nil))))
	for range 50 {
		n, err := testutil.GatherAndCount(reg, "herd_encode_backlog_seconds")
		require.NoError(t, err)
		require.Equal(t, 1, n)
	}
	require.Equal(t, int32(1), st.n.Load())
}
