package library

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/rule"
	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/testenv"
)

// A health check queues a check job a file, at most CheckConcurrency of
// them at once, each one check task that only a worker reading the
// library can claim; what each finds is recorded on its file, a failed
// check says why, and a job recorded but never made (a crash between
// the two) is made again.
func TestCheckJobsTakeTurns(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := testenv.SQLite(t)
	dir := t.TempDir()
	for _, p := range []string{"a.mkv", "b.mkv", "c.mkv", "d.mkv"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, p), []byte(p), 0o644))
		require.NoError(t, st.PutLibraryFile(ctx, store.LibraryFile{Library: "movies", Path: p, Size: 5, State: StateSkipped, UpdatedAt: time.Now()}))
	}
	woken := 0
	m := New([]Spec{{Name: "movies", Path: dir, Profile: "archive-hevc", Action: ActionReplace, Labels: map[string]string{"shelf": "top"}}},
		st, &submits{}, outputs{}, nil, media.Limits{}, slog.New(slog.DiscardHandler))
	m.CheckConcurrency, m.Wake = 2, func() { woken++ }
	l := m.libs["movies"]
	_, err := st.StartLibraryCheck(ctx, "movies")
	require.NoError(t, err)
	// d's job was recorded, then lost before it was made (a crash).
	_, err = st.SetLibraryCheckJob(ctx, "movies", "d.mkv", "", "jnever")
	require.NoError(t, err)

	live, err := m.checkStep(ctx, l)
	require.NoError(t, err)
	require.Equal(t, 2, live)
	files, err := st.LibraryFiles(ctx, "movies")
	require.NoError(t, err)
	require.Empty(t, files[3].CheckJob, "the lost job is forgotten, to be made again")
	require.Equal(t, 2, woken)
	claim := func(caps ...string) *job.Claimed {
		c, err := st.Claim(ctx, store.ClaimRequest{Owner: "o", Worker: "w", Caps: caps, Now: time.Now(), TTL: time.Minute})
		require.NoError(t, err)
		return c
	}
	require.Nil(t, claim("h264", "hevc", "library:shows"), "only a worker that reads the library claims its checks")
	a := claim("library:movies")
	require.NotNil(t, a)
	require.Equal(t, job.KindCheck, a.Task.Kind)
	require.Equal(t, job.Source{AssetID: a.Job.Source.AssetID, Name: "a.mkv", Size: 5, Library: "movies"}, a.Job.Source)
	require.Equal(t, map[string]string{"shelf": "top", "library": "movies"}, a.Job.Labels)
	b := claim("library:movies")
	require.NotNil(t, b)
	require.Nil(t, claim("library:movies"), "two at a time")

	res, _ := json.Marshal(job.CheckResult{State: job.CheckDamaged, Note: "corrupt frame"})
	require.NoError(t, st.Complete(ctx, a.Lease, job.Result{Data: res}, time.Now()))
	require.NoError(t, st.Fail(ctx, b.Lease, job.Failure{Message: "the disk went away", Permanent: true}, time.Now()))
	live, err = m.checkStep(ctx, l)
	require.NoError(t, err)
	require.Equal(t, 2, live, "two more queued")
	files, err = st.LibraryFiles(ctx, "movies")
	require.NoError(t, err)
	require.Equal(t, []string{CheckDamaged, CheckSkipped, CheckPending, CheckPending}, []string{files[0].Check, files[1].Check, files[2].Check, files[3].Check})
	require.Equal(t, "corrupt frame", files[0].CheckNote)
	require.Contains(t, files[1].CheckNote, "could not be checked: the disk went away", "a check that could not run says nothing of the file")
	require.Equal(t, a.Job.ID, files[0].CheckJob)

	require.NotContains(t, []string{"", "jnever"}, files[3].CheckJob, "made again")
	for range 2 {
		c := claim("library:movies")
		require.NotNil(t, c)
		res, _ := json.Marshal(job.CheckResult{State: job.CheckOK})
		require.NoError(t, st.Complete(ctx, c.Lease, job.Result{Data: res}, time.Now()))
	}
	live, err = m.checkStep(ctx, l)
	require.NoError(t, err)
	require.Zero(t, live)
	r, err := m.Status(ctx, "movies")
	require.NoError(t, err)
	require.Equal(t, map[string]int{CheckDamaged: 1, CheckSkipped: 1, CheckOK: 2}, r.Checks)
}

// A file that goes while its check waits has its check job canceled by
// the scan that finds it gone; a check job that failed on a file that is
// gone leaves no verdict.
func TestCheckOfAFileThatWent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := testenv.SQLite(t)
	dir := t.TempDir()
	for _, p := range []string{"a.mkv", "b.mkv"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, p), []byte(p), 0o644))
		require.NoError(t, st.PutLibraryFile(ctx, store.LibraryFile{Library: "movies", Path: p, Size: 5, State: StateSkipped, UpdatedAt: time.Now()}))
	}
	never, err := rule.Compile("false")
	require.NoError(t, err)
	m := New([]Spec{{Name: "movies", Path: dir, Profile: "archive-hevc", Action: ActionReplace, Rule: never}},
		st, &submits{}, outputs{}, admitAll{}, media.Limits{}, slog.New(slog.DiscardHandler))
	l := m.libs["movies"]
	_, err = st.StartLibraryCheck(ctx, "movies")
	require.NoError(t, err)
	_, err = m.checkStep(ctx, l)
	require.NoError(t, err)
	files, err := st.LibraryFiles(ctx, "movies")
	require.NoError(t, err)
	a, b := files[0], files[1]

	require.NoError(t, os.Remove(filepath.Join(dir, "a.mkv")))
	_, err = m.scanNow(ctx, l, true)
	require.NoError(t, err)
	j, err := st.GetJob(ctx, a.CheckJob)
	require.NoError(t, err)
	require.Equal(t, job.Canceled, j.State, "the gone file's check is canceled")

	c, err := st.Claim(ctx, store.ClaimRequest{Owner: "o", Worker: "w", Caps: []string{"library:movies"}, Now: time.Now(), TTL: time.Minute})
	require.NoError(t, err)
	require.Equal(t, b.CheckJob, c.Job.ID)
	require.NoError(t, os.Remove(filepath.Join(dir, "b.mkv")))
	require.NoError(t, st.Fail(ctx, c.Lease, job.Failure{Message: "b.mkv is no longer in library movies", Permanent: true}, time.Now()))
	_, err = m.checkStep(ctx, l)
	require.NoError(t, err)
	files, err = st.LibraryFiles(ctx, "movies")
	require.NoError(t, err)
	require.Len(t, files, 1)
	require.Empty(t, files[0].Check, "no verdict on a file that went")
}
