package watch

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/config"
	"github.com/herdhq/herd/internal/ingest"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/store/sqlstore"
	"github.com/herdhq/herd/internal/testenv"
)

// crash is what a dying submitter panics with: the process stops there,
// and nothing the watcher would have done next happens.
type crash struct{}

// dyingSubmitter is ingest's own submitter, except that herd "dies" in the
// next ImportFile: before it reaches the store, or once the job is committed
// and before the watcher hears of it.
type dyingSubmitter struct {
	*ingest.Submitter
	before, after bool
}

func (s *dyingSubmitter) ImportFile(ctx context.Context, root *os.Root, rel, name string, p *profile.Profile, opt ingest.Options, id string) (job.Job, bool, error) {
	if s.before {
		s.before = false
		panic(crash{})
	}
	j, created, err := s.Submitter.ImportFile(ctx, root, rel, name, p, opt, id)
	if s.after && err == nil {
		s.after = false
		panic(crash{})
	}
	return j, created, err
}

type noKick struct{}

func (noKick) Kick() {}

// dies runs fn and reports whether herd died in it.
func dies(fn func()) (died bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(crash); !ok {
				panic(r)
			}
			died = true
		}
	}()
	fn()
	return false
}

// crashFixture is a watch folder over a real store and ingest, whose
// watcher can be killed and started again on the same work area.
type crashFixture struct {
	st   *sqlstore.Store
	sub  *dyingSubmitter
	f    config.Watch
	work string
}

func setupCrash(t *testing.T) *crashFixture {
	t.Helper()
	dir := t.TempDir()
	st, blobs := testenv.Stores(t, dir)
	sub := &dyingSubmitter{Submitter: ingest.New(st, blobs, profile.Builtin(), noKick{}, ingest.Config{})}
	f := config.Watch{Path: t.TempDir(), Profile: "mp4-library", AfterSuccess: config.AfterMove}
	return &crashFixture{st: st, sub: sub, f: f, work: filepath.Join(dir, "watch")}
}

// start starts a watcher, as herd serve does after a restart: it recovers
// what the last one left and looks at every item once.
func (fx *crashFixture) start(t *testing.T) *Watcher {
	t.Helper()
	w, err := New([]config.Watch{fx.f}, nil, fx.work, fx.sub, fx.st, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.NoError(t, w.recover(context.Background()))
	return w
}

func (fx *crashFixture) jobs(t *testing.T) []job.Job {
	t.Helper()
	jobs, _, err := fx.st.ListJobs(context.Background(), store.ListOptions{Limit: 100})
	require.NoError(t, err)
	return jobs
}

// item is the one item in the work area.
func (fx *crashFixture) item(t *testing.T, w *Watcher) *Item {
	t.Helper()
	entries, err := os.ReadDir(fx.work)
	require.NoError(t, err)
	var items []*Item
	for _, e := range entries {
		if e.IsDir() {
			it, err := w.load(e.Name())
			require.NoError(t, err)
			items = append(items, it)
		}
	}
	require.Len(t, items, 1)
	return items[0]
}

// runOutOfAttempts kills the server under the job's first task until the
// job has no attempts left, as herd serve's restarts do: a task that was
// running when the server died counts as an attempt.
func (fx *crashFixture) runOutOfAttempts(t *testing.T, id string) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	for i := range job.DefaultMaxAttempts {
		now = now.Add(time.Minute)
		c, err := fx.st.Claim(ctx, store.ClaimRequest{Owner: "local/test/0", Worker: "local", Now: now, TTL: time.Minute})
		require.NoError(t, err)
		require.NotNil(t, c, "attempt %d", i+1)
		require.Equal(t, id, c.Task.JobID)
		_, err = fx.st.ReleaseOwners(ctx, "local/test/", now)
		require.NoError(t, err)
	}
	j, err := fx.st.GetJob(ctx, id)
	require.NoError(t, err)
	require.Equal(t, job.Failed, j.State)
}

// herd dies between making a file's job and noting it on the item. However
// the job fares before herd looks at the item again, the file never gets a
// second job: a job that failed meanwhile (out of attempts to the same
// crashes) leaves the file in failed/ for `herd retry`, as any failed job does.
func TestCrashAfterJobMadeNeverMakesASecond(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		before    bool // herd died before the job was in the store
		fails     bool // the job runs out of attempts before herd looks again
		grows     bool // the file's writer went on after the job was made
		wantState string
		wantJobs  int
		wantLive  int // jobs not ended
	}{
		{name: "died before the job was made", before: true, wantState: stateQueued, wantJobs: 1, wantLive: 1},
		{name: "job still queued", wantState: stateQueued, wantJobs: 1, wantLive: 1},
		{name: "job failed meanwhile", fails: true, wantState: stateFailed, wantJobs: 1, wantLive: 0},
		{name: "file grew meanwhile", grows: true, wantState: stateQueued, wantJobs: 2, wantLive: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			fx := setupCrash(t)
			path := filepath.Join(fx.f.Path, "Crash (2024).mkv")
			write(t, path, "the movie's bytes")
			fx.sub.before, fx.sub.after = tc.before, !tc.before
			w := fx.start(t)
			require.True(t, dies(func() { _ = w.take(ctx, fx.f, path, observe(t, path)) }), "herd died in ImportFile")
			if !tc.before {
				require.Len(t, fx.jobs(t), 1, "the job is in the store")
			}
			require.Equal(t, stateTaken, fx.item(t, w).State, "the item never heard of its job")
			if tc.fails {
				fx.runOutOfAttempts(t, fx.jobs(t)[0].ID)
			}
			if tc.grows {
				it := fx.item(t, w)
				held, err := os.OpenFile(filepath.Join(fx.work, it.ID, it.held()), os.O_WRONLY|os.O_APPEND, 0)
				require.NoError(t, err)
				_, err = held.WriteString(" and more")
				require.NoError(t, err)
				require.NoError(t, held.Close())
			}

			w = fx.start(t)
			for range 3 {
				w.finishAll(ctx)
			}
			it := fx.item(t, w)
			jobs := fx.jobs(t)
			require.Len(t, jobs, tc.wantJobs)
			live := 0
			for _, j := range jobs {
				if !j.State.Final() {
					live++
					require.Equal(t, j.ID, it.JobID, "the live job is the item's")
				}
			}
			require.Equal(t, tc.wantLive, live, "live jobs")
			require.Equal(t, tc.wantState, it.State)
			if tc.fails {
				require.Equal(t, jobs[0].ID, it.JobID, "the failed job is the item's")
				note, err := os.ReadFile(filepath.Join(fx.f.Path, FailedDir, "Crash (2024).mkv"+noteSuffix))
				require.NoError(t, err)
				require.Contains(t, string(note), "herd retry "+jobs[0].ID)
				require.Contains(t, string(note), "the server restarted while this task ran")
				require.FileExists(t, filepath.Join(fx.f.Path, FailedDir, "Crash (2024).mkv"))
			}
		})
	}
}
