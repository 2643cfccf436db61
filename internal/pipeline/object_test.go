package pipeline

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/job"
)

// A step written again later in the job (a quality gate's re-encode and
// its verify) is read from the later task's attempt, and a failed or
// unfinished task's attempt is never read.
func TestCommittedIsTheLastSuccess(t *testing.T) {
	t.Parallel()
	tasks := []job.Task{
		{ID: "t-enc1", Kind: job.KindEncode, State: job.TaskSucceeded, Fence: 1},
		{ID: "t-ver1", Kind: job.KindVerify, State: job.TaskSucceeded, Fence: 2},
		{ID: "t-enc2", Kind: job.KindEncode, State: job.TaskSucceeded, Fence: 3},
		{ID: "t-ver2", Kind: job.KindVerify, State: job.TaskRunning, Fence: 1},
	}
	o := &ObjectFiles{Tasks: func(context.Context, string) ([]job.Task, error) { return tasks, nil }}
	ctx := context.Background()

	p, ok, err := o.committed(ctx, "j", StepEncode)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, attemptPrefix("j", StepEncode, "t-enc2", 3), p, "the re-encode's")

	p, ok, err = o.committed(ctx, "j", StepVerified)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, attemptPrefix("j", StepVerified, "t-ver1", 2), p, "the second verify has not succeeded yet")

	tasks[3].State = job.TaskSucceeded
	p, _, err = o.committed(ctx, "j", StepVerified)
	require.NoError(t, err)
	require.Equal(t, attemptPrefix("j", StepVerified, "t-ver2", 1), p, "what finalize publishes")

	_, ok, err = o.committed(ctx, "j", StepThumbs)
	require.NoError(t, err)
	require.False(t, ok)
}
