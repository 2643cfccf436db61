package testenv

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/store"
)

// JobRunner is what FinishJob needs from a store.
type JobRunner interface {
	GetJob(ctx context.Context, id string) (job.Job, error)
	Claim(ctx context.Context, req store.ClaimRequest) (*job.Claimed, error)
	Complete(ctx context.Context, l job.Lease, r job.Result, now time.Time) error
}

// FinishJob completes tasks through the store, with an empty plan and no
// outputs, until job id has succeeded: what a worker would report, without
// media. It claims the oldest runnable task each time, so it may finish
// tasks of older jobs too.
func FinishJob(t testing.TB, st JobRunner, id string) {
	t.Helper()
	ctx := context.Background()
	for {
		j, err := st.GetJob(ctx, id)
		require.NoError(t, err)
		if j.State == job.Succeeded {
			return
		}
		c, err := st.Claim(ctx, store.ClaimRequest{Owner: "w", Worker: "w", Now: time.Now(), TTL: time.Minute})
		require.NoError(t, err)
		require.NotNil(t, c, "job %s is %s with nothing to claim", id, j.State)
		require.NoError(t, st.Complete(ctx, c.Lease, job.Result{Plan: json.RawMessage(`{}`), Outputs: json.RawMessage(`[]`)}, time.Now()))
	}
}
