package worker_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/queue"
	"github.com/herdhq/herd/internal/testenv"
	"github.com/herdhq/herd/internal/worker"
)

// TestAV1TaskOnlyForWorkersThatProveLibsvtav1: a worker proves libsvtav1
// with a real trial encode; one whose ffmpeg lacks it (the real ffmpeg
// behind a wrapper that refuses that encoder, as builds without SVT-AV1
// do) proves everything else but not av1, and never claims the encode of a
// web-cmaf-av1 job, which the worker that proved it claims.
func TestAV1TaskOnlyForWorkersThatProveLibsvtav1(t *testing.T) {
	t.Parallel()
	real, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skipf("ffmpeg not found: %v", err)
	}
	ctx := context.Background()
	software := worker.Software
	with := worker.Caps(worker.DetectCaps(ctx, real, software))
	require.Contains(t, with, "av1", "Debian's ffmpeg has libsvtav1")
	require.Contains(t, with, "h264")

	dir := t.TempDir()
	lacking := filepath.Join(dir, "ffmpeg")
	script := "#!/bin/sh\nfor a in \"$@\"; do\n  if [ \"$a\" = libsvtav1 ]; then echo \"Unknown encoder 'libsvtav1'\" >&2; exit 1; fi\ndone\nexec " + real + " \"$@\"\n"
	require.NoError(t, os.WriteFile(lacking, []byte(script), 0o755))
	trials := worker.DetectCaps(ctx, lacking, software)
	without := worker.Caps(trials)
	require.NotContains(t, without, "av1")
	require.Contains(t, without, "h264", "the other encoders still work")
	require.Contains(t, worker.FormatTrials(trials), "Unknown encoder 'libsvtav1'", "herd worker --check says why")

	st := testenv.SQLite(t)
	p, ok := profile.Builtin().Get("web-cmaf-av1")
	require.True(t, ok)
	a, err := st.PutAsset(ctx, job.Asset{ID: "a1", Name: "x", Size: 1, SHA256: "s", Key: "sources/s", CreatedAt: time.Now()})
	require.NoError(t, err)
	j := job.Job{ID: job.NewID("j"), Profile: p.Name, ProfileVersion: p.Version, IdempotencyKey: "k", Source: job.Source{AssetID: a.ID}}
	var encode job.Task
	for _, tk := range pipeline.Tasks(p, 3) {
		if tk.Kind == job.KindEncode {
			encode = tk
		}
	}
	encode.DependsOn = nil // runnable now: the probe is not what this test is about
	require.Equal(t, []string{"av1"}, encode.Needs)
	_, _, err = st.CreateJob(ctx, j, []job.Task{encode}, time.Now())
	require.NoError(t, err)

	q := queue.New(st, &queue.Signal{}, queue.Config{LeaseTTL: time.Minute})
	c, err := q.Claim(ctx, "plain/0", "plain", without)
	require.NoError(t, err)
	require.Nil(t, c, "a worker without libsvtav1 claims no AV1 encode")
	c, err = q.Claim(ctx, "full/0", "full", with)
	require.NoError(t, err)
	require.NotNil(t, c)
	require.Equal(t, encode.ID, c.Task.ID)
}
