package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/store"
)

// A library's files: recorded and updated in place, listed by state, moved
// to a new name in one step, forgotten; their health checks kept through
// updates; the trash's entries listed by age.
func testLibraries(t *testing.T, st store.Store) {
	s, ok := st.(store.LibraryStore)
	require.True(t, ok, "%T keeps no library files", st)
	ctx := context.Background()
	f := store.LibraryFile{Library: "movies", Path: "Heat (1995)/Heat.avi", Size: 1 << 30, MTime: t0.UnixNano(), Inode: 1<<40 + 7,
		State: "matched", Facts: []byte(`{"video":{"codec":"mpeg4"}}`), ScannedAt: t0, UpdatedAt: t0}
	require.NoError(t, s.PutLibraryFile(ctx, f))
	require.NoError(t, s.PutLibraryFile(ctx, store.LibraryFile{Library: "movies", Path: "b.mkv", Size: 5, State: "skipped", ScannedAt: t0, UpdatedAt: t0}))
	require.NoError(t, s.PutLibraryFile(ctx, store.LibraryFile{Library: "shows", Path: "c.mkv", Size: 5, State: "matched", ScannedAt: t0, UpdatedAt: t0}))
	f.State, f.JobID, f.Step, f.Trash, f.NewSize, f.NewSHA256 = "queued", "j1", "ready", ".herd-trash/x", 1<<29, "ab"
	f.UpdatedAt = t0.Add(time.Minute)
	require.NoError(t, s.PutLibraryFile(ctx, f))
	got, err := s.LibraryFiles(ctx, "movies")
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, "Heat (1995)/Heat.avi", got[0].Path)
	require.Equal(t, f.Inode, got[0].Inode)
	require.Equal(t, "queued", got[0].State)
	require.Equal(t, "ready", got[0].Step)
	require.Equal(t, ".herd-trash/x", got[0].Trash)
	require.JSONEq(t, `{"video":{"codec":"mpeg4"}}`, string(got[0].Facts))
	in, err := s.LibraryFilesIn(ctx, "movies", "queued", "failed")
	require.NoError(t, err)
	require.Len(t, in, 1)

	// Checks: every file pending, those with a job listed first; a check
	// started again while one is under way joins it; a result kept
	// through the file's updates.
	n, err := s.StartLibraryCheck(ctx, "movies")
	require.NoError(t, err)
	require.Equal(t, int64(2), n)
	ok, err = s.SetLibraryCheckJob(ctx, "movies", "b.mkv", "", "jcheck")
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = s.SetLibraryCheckJob(ctx, "movies", "b.mkv", "", "jother")
	require.NoError(t, err)
	require.False(t, ok, "it has a job already")
	pending, err := s.LibraryCheckPending(ctx, "movies", 10)
	require.NoError(t, err)
	require.Len(t, pending, 2)
	require.Equal(t, []string{"b.mkv", "jcheck"}, []string{pending[0].Path, pending[0].CheckJob}, "the file with a job first")
	pending, err = s.LibraryCheckPending(ctx, "movies", 1)
	require.NoError(t, err)
	require.Equal(t, "b.mkv", pending[0].Path)
	n, err = s.StartLibraryCheck(ctx, "movies")
	require.NoError(t, err)
	require.Zero(t, n, "pending already")
	ok, err = s.FinishLibraryCheck(ctx, "movies", "b.mkv", "jother", "ok", "")
	require.NoError(t, err)
	require.False(t, ok, "not the file's check job")
	ok, err = s.FinishLibraryCheck(ctx, "movies", "b.mkv", "jcheck", "damaged", "corrupt frame")
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = s.SetLibraryCheckJob(ctx, "movies", "b.mkv", "jcheck", "jlate")
	require.NoError(t, err)
	require.False(t, ok, "no longer pending")
	ok, err = s.FinishLibraryCheck(ctx, "movies", "b.mkv", "jcheck", "ok", "")
	require.NoError(t, err)
	require.False(t, ok, "recorded once")
	n, err = s.StartLibraryCheck(ctx, "movies")
	require.NoError(t, err)
	require.Zero(t, n, "a check under way (Heat.avi's waits) is joined: b.mkv, checked in it, is not checked again")
	require.NoError(t, s.PutLibraryFile(ctx, store.LibraryFile{Library: "movies", Path: "b.mkv", Size: 5, State: "skipped", ScannedAt: t0, UpdatedAt: t0}))
	got, err = s.LibraryFiles(ctx, "movies")
	require.NoError(t, err)
	require.Equal(t, "damaged", got[1].Check)
	require.Equal(t, "corrupt frame", got[1].CheckNote)
	require.Equal(t, "jcheck", got[1].CheckJob)
	ok, err = s.SetLibraryCheckJob(ctx, "movies", "Heat (1995)/Heat.avi", "", "jheat")
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = s.FinishLibraryCheck(ctx, "movies", "Heat (1995)/Heat.avi", "jheat", "ok", "")
	require.NoError(t, err)
	require.True(t, ok)
	n, err = s.StartLibraryCheck(ctx, "movies")
	require.NoError(t, err)
	require.Equal(t, int64(2), n, "the check under way ended: a new one checks every file again")

	f.Path, f.State, f.Step = "Heat (1995)/Heat.mkv", "replaced", ""
	require.NoError(t, s.MoveLibraryFile(ctx, "Heat (1995)/Heat.avi", f))
	got, err = s.LibraryFiles(ctx, "movies")
	require.NoError(t, err)
	require.Equal(t, []string{"Heat (1995)/Heat.mkv", "b.mkv"}, []string{got[0].Path, got[1].Path})
	require.NoError(t, s.DeleteLibraryFile(ctx, "movies", "b.mkv"))
	got, err = s.LibraryFiles(ctx, "movies")
	require.NoError(t, err)
	require.Len(t, got, 1)

	require.NoError(t, s.AddLibraryTrash(ctx, store.TrashEntry{Library: "movies", Path: ".herd-trash/old.avi", Original: "old.avi", TrashedAt: t0}))
	require.NoError(t, s.AddLibraryTrash(ctx, store.TrashEntry{Library: "movies", Path: ".herd-trash/new.avi", Original: "new.avi", TrashedAt: t0.Add(time.Hour)}))
	old, err := s.LibraryTrashBefore(ctx, "movies", t0.Add(time.Minute))
	require.NoError(t, err)
	require.Len(t, old, 1)
	require.Equal(t, "old.avi", old[0].Original)
	require.NoError(t, s.RemoveLibraryTrash(ctx, "movies", ".herd-trash/old.avi"))
	old, err = s.LibraryTrashBefore(ctx, "movies", t0.Add(2*time.Hour))
	require.NoError(t, err)
	require.Len(t, old, 1)
}
