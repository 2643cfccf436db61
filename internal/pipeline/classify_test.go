package pipeline

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/profile"
)

// A malformed output is permanent at once (the same plan makes the same
// file), and the user sees which output and what is wrong.
func TestClassifyBadOutputIsPermanent(t *testing.T) {
	t.Parallel()
	err := classify(fmt.Errorf("verify: %w", &media.OutputError{Output: "sprite.jpg", Problem: "is missing: the encode wrote no sprite"}), "verifying the outputs failed")
	code, ok := job.IsPermanent(err)
	require.True(t, ok)
	require.Equal(t, "bad_output", code)
	require.Equal(t, "verifying the outputs failed: sprite.jpg is missing: the encode wrote no sprite", job.UserMessage(err, ""))
}

// New jobs have no thumbnails task: the encode makes the pictures.
func TestTasksHaveNoThumbnailsTask(t *testing.T) {
	t.Parallel()
	p, ok := profile.Builtin().Get("web-hls")
	require.True(t, ok)
	require.True(t, p.Thumbnails.Sprite)
	tasks := Tasks(p, 3)
	require.Len(t, tasks, 4, "probe, encode, verify, finalize")
	for _, k := range tasks {
		require.NotEqual(t, job.KindThumbnails, k.Kind)
	}
}
