package pipeline_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/pipeline"
)

// Publish requests for one job that race each other (a worker retrying
// while its first request still runs) leave the outputs in place: never
// moved aside and deleted by the one that lost.
func TestConcurrentPublishKeepsOutputs(t *testing.T) {
	t.Parallel()
	blobs, err := blob.NewLocal(t.TempDir())
	require.NoError(t, err)
	files := &pipeline.LocalFiles{Blobs: blobs, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx := context.Background()
	for round := range 20 {
		c := &job.Claimed{Job: job.Job{ID: job.NewID("j")}}
		dir, err := files.Scratch(pipeline.StepVerified)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "video.mp4"), []byte("verified bytes"), 0o644))
		require.NoError(t, files.Commit(ctx, c, pipeline.StepVerified, dir))
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() { _ = files.Finalize(ctx, c) })
		}
		wg.Wait()
		out, err := blobs.Path(pipeline.OutputsKey(c.Job.ID))
		require.NoError(t, err)
		b, err := os.ReadFile(filepath.Join(out, "video.mp4"))
		require.NoError(t, err, "round %d: the published output is gone", round)
		require.Equal(t, "verified bytes", string(b))
		require.NoError(t, files.Finalize(ctx, c), "publishing again finds the outputs in place")
	}
}

// A commit whose new folder vanished puts back the folder it moved aside.
func TestCommitDirRestoresOnFailure(t *testing.T) {
	t.Parallel()
	blobs, err := blob.NewLocal(t.TempDir())
	require.NoError(t, err)
	dir, err := blobs.TempDir("x")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a"), []byte("old"), 0o644))
	require.NoError(t, blobs.CommitDir(dir, "k/out"))
	gone, err := blobs.TempDir("y")
	require.NoError(t, err)
	require.NoError(t, os.Remove(gone))
	// syncTree of a missing folder fails first; make one that vanishes after it.
	require.Error(t, blobs.CommitDir(gone, "k/out"))
	p, err := blobs.Path("k/out/a")
	require.NoError(t, err)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, "old", string(b))
}
