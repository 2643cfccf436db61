package library

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/ingest"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/rule"
	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/testenv"
	"github.com/herdhq/herd/internal/window"
)

// submits records the jobs a library queues.
type submits struct{ rels []string }

func (s *submits) Profile(string) (*profile.Profile, error) {
	return &profile.Profile{Name: "archive-hevc", Format: profile.FormatMKV}, nil
}

func (s *submits) ImportFile(_ context.Context, _ *os.Root, rel, _ string, _ *profile.Profile, opt ingest.Options, id string) (job.Job, bool, error) {
	s.rels = append(s.rels, rel+" "+opt.Labels["library"])
	return job.Job{ID: id}, true, nil
}

// Matched files are queued only inside the window and while fewer than
// max_running of the library's jobs run.
func TestQueueKeepsToWindowAndMaxRunning(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := testenv.SQLite(t)
	dir := t.TempDir()
	for _, p := range []string{"a.mkv", "b.mkv", "c.mkv"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, p), []byte(p), 0o644))
		require.NoError(t, st.PutLibraryFile(ctx, store.LibraryFile{Library: "movies", Path: p, Size: 5, State: StateMatched, UpdatedAt: time.Now()}))
	}
	night, err := window.Parse("01:00-07:00")
	require.NoError(t, err)
	sub := &submits{}
	m := New([]Spec{{Name: "movies", Path: dir, Profile: "archive-hevc", Action: ActionReplace, MaxRunning: 2, Window: night}},
		st, sub, outputs{}, nil, media.Limits{}, slog.New(slog.DiscardHandler))
	l := m.libs["movies"]
	m.now = func() time.Time { return time.Date(2026, 1, 1, 12, 0, 0, 0, time.Local) }
	n, err := m.queueN(ctx, l)
	require.NoError(t, err)
	require.Zero(t, n, "outside the window")
	m.now = func() time.Time { return time.Date(2026, 1, 1, 2, 0, 0, 0, time.Local) }
	n, err = m.queueN(ctx, l)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	n, err = m.queueN(ctx, l)
	require.NoError(t, err)
	require.Zero(t, n, "two of its jobs run")
	require.Equal(t, []string{"a.mkv movies", "b.mkv movies"}, sub.rels, "labelled with the library")
	queued, err := st.LibraryFilesIn(ctx, "movies", StateQueued)
	require.NoError(t, err)
	require.Len(t, queued, 2)
	for _, f := range queued {
		require.NotEmpty(t, f.JobID, "the job's id is recorded before the job is made")
	}
}

// alongside puts the new file beside the original under the profile's
// name; publish leaves the files alone and only waits for the delivery.
func TestAlongsideAndPublish(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	for _, action := range []string{ActionAlongside, ActionPublish} {
		dir := t.TempDir()
		orig := filepath.Join(dir, "Heat.mkv")
		old := bytes.Repeat([]byte("old "), 5000)
		require.NoError(t, os.WriteFile(orig, old, 0o644))
		fi, err := os.Stat(orig)
		require.NoError(t, err)
		st := doneJobs{Store: testenv.SQLite(t), jobs: map[string]job.Job{"j1": {ID: "j1", State: job.Succeeded,
			Outputs: []byte(`[{"name":"mkv","kind":"mkv","path":"new.mkv","size":6000}]`)}}}
		outs := outputs{"jobs/j1/out/new.mkv": bytes.Repeat([]byte("new"), 2000)}
		require.NoError(t, st.PutLibraryFile(ctx, store.LibraryFile{Library: "movies", Path: "Heat.mkv", Size: fi.Size(), MTime: fi.ModTime().UnixNano(),
			Inode: inode(fi), State: StateQueued, JobID: "j1", UpdatedAt: time.Now()}))
		m := New([]Spec{{Name: "movies", Path: dir, Profile: "archive-hevc", Action: action, Publish: []string{"lib"}, MaxRunning: 1}},
			st, noSubmit{}, outs, nil, media.Limits{}, slog.New(slog.DiscardHandler))
		require.NoError(t, m.apply(ctx, m.libs["movies"]))
		got, err := os.ReadFile(orig)
		require.NoError(t, err)
		require.Equal(t, old, got, "%s: the original stays", action)
		files, err := st.LibraryFiles(ctx, "movies")
		require.NoError(t, err)
		require.Len(t, files, 1)
		require.Equal(t, StateDone, files[0].State)
		if action == ActionAlongside {
			beside, err := os.ReadFile(filepath.Join(dir, "Heat - archive-hevc.mkv"))
			require.NoError(t, err)
			require.Equal(t, outs["jobs/j1/out/new.mkv"], beside)
			require.NoDirExists(t, filepath.Join(dir, TrashDir))
		} else {
			require.Equal(t, "delivered to lib", files[0].Note)
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			require.Len(t, entries, 1, "publish writes nothing into the library")
		}
	}
}

// The trash keeps an original for keep_originals, then removes it.
func TestTrashIsEmptiedAfterKeepOriginals(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := testenv.SQLite(t)
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, TrashDir), 0o755))
	for _, p := range []string{"old.mkv", "new.mkv"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, TrashDir, p), []byte(p), 0o644))
	}
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	require.NoError(t, st.AddLibraryTrash(ctx, store.TrashEntry{Library: "movies", Path: TrashDir + "/old.mkv", Original: "old.mkv", TrashedAt: now.Add(-15 * 24 * time.Hour)}))
	require.NoError(t, st.AddLibraryTrash(ctx, store.TrashEntry{Library: "movies", Path: TrashDir + "/new.mkv", Original: "new.mkv", TrashedAt: now.Add(-13 * 24 * time.Hour)}))
	m := New([]Spec{{Name: "movies", Path: dir, Profile: "archive-hevc", MaxRunning: 1, KeepOriginals: 14 * 24 * time.Hour}},
		st, noSubmit{}, outputs{}, nil, media.Limits{}, slog.New(slog.DiscardHandler))
	m.now = func() time.Time { return now }
	require.NoError(t, m.purge(ctx, m.libs["movies"]))
	require.NoFileExists(t, filepath.Join(dir, TrashDir, "old.mkv"))
	require.FileExists(t, filepath.Join(dir, TrashDir, "new.mkv"))
	left, err := st.LibraryTrashBefore(ctx, "movies", now)
	require.NoError(t, err)
	require.Len(t, left, 1)
}

// A plan, or a health check's, marks what the rule matches planned:
// nothing is queued until a scan, however many steps pass.
func TestPlanQueuesNothing(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := testenv.SQLite(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.mkv"), []byte("a film"), 0o644))
	rl, err := rule.Compile("true")
	require.NoError(t, err)
	sub := &submits{}
	m := New([]Spec{{Name: "movies", Path: dir, Rule: rl, Profile: "archive-hevc", Action: ActionReplace, MaxRunning: 2}},
		st, sub, outputs{}, admitAll{}, media.Limits{}, slog.New(slog.DiscardHandler))
	m.ProbeEvery = 0
	r, err := m.Plan(ctx, "movies")
	require.NoError(t, err)
	require.Equal(t, map[string]int{StatePlanned: 1}, r.Counts)
	_, err = m.StartCheck(ctx, "movies")
	require.NoError(t, err)
	for range 3 {
		require.NoError(t, m.step(ctx, m.libs["movies"]))
	}
	require.Empty(t, sub.rels, "planned is not queued")
	r, err = m.Scan(ctx, "movies")
	require.NoError(t, err)
	require.Equal(t, 1, r.Queued, "the scan takes up what the plan found")
	require.Equal(t, []string{"a.mkv movies"}, sub.rels)
}

// admitAll probes every file as a short H.264 film.
type admitAll struct{}

func (admitAll) Admit(context.Context, string, media.Limits) (*media.Info, error) {
	return &media.Info{Demuxer: "matroska", Duration: 60, Size: 6, Video: &media.VideoStream{Codec: "h264", Width: 1280, Height: 720}}, nil
}
