package watch

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/config"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/store"
)

// succeedJob runs every task of the store's one live job to success.
func (fx *crashFixture) succeedJob(t *testing.T, id string) {
	t.Helper()
	ctx := context.Background()
	for {
		c, err := fx.st.Claim(ctx, store.ClaimRequest{Owner: "local/test/0", Worker: "local", Now: time.Now(), TTL: time.Minute})
		require.NoError(t, err)
		if c == nil {
			break
		}
		require.Equal(t, id, c.Task.JobID)
		require.NoError(t, fx.st.Complete(ctx, c.Lease, job.Result{Data: json.RawMessage(`{}`), Outputs: json.RawMessage(`[{"name":"video","kind":"mp4","path":"video.mp4"}]`)}, time.Now()))
	}
	j, err := fx.st.GetJob(ctx, id)
	require.NoError(t, err)
	require.Equal(t, job.Succeeded, j.State)
}

// outbound lists the due deliveries of job id as "event target".
func (fx *crashFixture) outbound(t *testing.T, id string) []string {
	t.Helper()
	due, err := fx.st.ClaimOutbound(context.Background(), "test", time.Now().Add(time.Hour), time.Minute, 100)
	require.NoError(t, err)
	var out []string
	for _, o := range due {
		if o.JobID == id {
			out = append(out, o.Event+" "+o.Target)
		}
		_, err := fx.st.SettleOutbound(context.Background(), o.ID, "test", 1, time.Time{})
		require.NoError(t, err)
	}
	return out
}

// Jobs the watcher made before a folder delivered to its publishers (an
// older herd delivered them itself; or the publish list grew since): once
// such a job succeeds, the folder's publishers are handed to the delivery
// service once, and the original waits for its library copies; an older
// herd's undelivered notifications are handed over too. A library that
// gives up on the file fails the item with a note that says so.
func TestOlderItemsHandOff(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		library bool // the library copy succeeds (else it gives up)
	}{{"copied", true}, {"library gave up", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fx := setupCrash(t)
			path := filepath.Join(fx.f.Path, "Old (2019).mkv")
			write(t, path, "an older herd's movie")
			w := fx.start(t) // the folder publishes nowhere yet
			require.NoError(t, w.take(ctx, fx.f, path, observe(t, path)))
			it := fx.item(t, w)
			require.Equal(t, stateQueued, it.State)
			j, err := fx.st.GetJob(ctx, it.JobID)
			require.NoError(t, err)
			require.Empty(t, j.Publish)
			require.Equal(t, &job.WatchOrigin{Folder: fx.f.Path, File: "Old (2019).mkv"}, j.Watch)
			require.Empty(t, fx.outbound(t, j.ID), "no publisher named")
			// An older herd's item carries a notification it had not sent.
			it.Pending = []Pending{{Publisher: "hook", Event: job.EventQueued, EventID: "evt_old"}}
			require.NoError(t, w.save(it))
			fx.succeedJob(t, j.ID)

			fx.f.Publish = []string{"movies", "hook"}
			pubs := map[string]config.Publisher{
				"movies": {Name: "movies", Type: config.PublishLibrary, Path: t.TempDir()},
				"hook":   {Name: "hook", Type: config.PublishWebhook, URL: "https://example.com/hook", Secret: "s"},
			}
			w, err = New([]config.Watch{fx.f}, pubs, fx.work, fx.sub, fx.st, w.log)
			require.NoError(t, err)
			for range 3 {
				w.finishAll(ctx)
			}
			require.ElementsMatch(t, []string{"job.queued hook", "job.succeeded movies", "job.succeeded hook"}, fx.outbound(t, j.ID),
				"handed off once, however often the watcher looked")
			it = fx.item(t, w)
			require.Equal(t, stateQueued, it.State, "waiting for the library copy")
			require.Equal(t, []string{"job.succeeded movies", "job.succeeded hook"}, it.HandedOff)
			require.Empty(t, it.Pending)
			require.FileExists(t, filepath.Join(fx.work, it.ID, it.held()))

			d := store.Delivery{JobID: j.ID, Publisher: "movies", Type: config.PublishLibrary, Event: job.EventSucceeded, Attempt: 1, OK: tc.library, Final: true,
				Detail: "/lib/Old (2019)/Old (2019).mkv", At: time.Now()}
			if !tc.library {
				d.Detail = "permission denied; gave up after 100 attempts"
			}
			require.NoError(t, fx.st.AddDelivery(ctx, d))
			w.finishAll(ctx)
			entries, err := os.ReadDir(fx.work)
			require.NoError(t, err)
			for _, e := range entries {
				require.False(t, e.IsDir(), "the item is finished: %s", e.Name())
			}
			if tc.library {
				require.FileExists(t, filepath.Join(fx.f.Path, DoneDir, "Old (2019).mkv"))
				return
			}
			failed := filepath.Join(fx.f.Path, FailedDir, "Old (2019).mkv")
			require.FileExists(t, failed)
			note, err := os.ReadFile(failed + noteSuffix)
			require.NoError(t, err)
			require.Contains(t, string(note), "could not be put in library movies: permission denied")
			require.Contains(t, string(note), "move this file back into the watch folder")
			require.NotContains(t, string(note), "herd retry", "a succeeded job cannot be retried")

			// Moved back, as the note says: the same content is the same
			// (succeeded) job, delivered again to the folder's publishers,
			// not encoded again; the earlier failure does not count.
			require.NoError(t, os.Rename(failed, path))
			require.NoError(t, w.take(ctx, fx.f, path, observe(t, path)))
			again := fx.item(t, w)
			require.Equal(t, j.ID, again.JobID)
			require.True(t, again.Duplicate)
			w.finishAll(ctx)
			w.finishAll(ctx)
			require.Equal(t, stateQueued, fx.item(t, w).State, "waiting for the new copy, not failed by the old one")
			require.Len(t, fx.jobs(t), 1, "not encoded again")
			// The delivery service makes the copy (outbound settles it).
			require.ElementsMatch(t, []string{"job.succeeded movies", "job.succeeded hook"}, fx.outbound(t, j.ID), "delivered again")
			d.OK, d.Detail, d.At = true, "/lib/Old (2019)/Old (2019).mkv", time.Now()
			require.NoError(t, fx.st.AddDelivery(ctx, d))
			w.finishAll(ctx)
			require.FileExists(t, filepath.Join(fx.f.Path, DoneDir, "Old (2019).mkv"))
		})
	}
}
