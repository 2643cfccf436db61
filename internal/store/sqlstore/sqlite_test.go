package sqlstore_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/store/sqlstore"
	"github.com/herdhq/herd/internal/store/storetest"
)

func TestSQLite(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "herd.db"))
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestMigrationsNumbered(t *testing.T) {
	t.Parallel()
	for _, d := range []string{"sqlite", "postgres"} {
		ms, err := sqlstore.Migrations(d)
		require.NoError(t, err, d)
		require.NotEmpty(t, ms)
	}
	gap := fstest.MapFS{"m/0001_a.sql": {Data: []byte("x")}, "m/0003_c.sql": {Data: []byte("x")}}
	_, err := sqlstore.ReadMigrations(gap, "m")
	require.ErrorContains(t, err, "duplicate or gap")
	dup := fstest.MapFS{"m/0001_a.sql": {Data: []byte("x")}, "m/0001_b.sql": {Data: []byte("x")}}
	_, err = sqlstore.ReadMigrations(dup, "m")
	require.ErrorContains(t, err, "duplicate or gap")
}

func TestReopenKeepsData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "herd.db")
	s, err := sqlstore.OpenSQLite(ctx, path)
	require.NoError(t, err)
	require.NoError(t, s.CreateKey(ctx, store.Key{ID: "k", Kind: "admin", Hash: "h"}))
	require.NoError(t, s.Close())
	s, err = sqlstore.OpenSQLite(ctx, path)
	require.NoError(t, err)
	defer s.Close()
	n, err := s.CountKeys(ctx, "admin")
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

// TestBackup: a backup is a checked, openable copy, and only the newest
// ones are kept.
func TestBackup(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := sqlstore.OpenSQLite(ctx, filepath.Join(dir, "herd.db"))
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.CreateKey(ctx, store.Key{ID: "k1", Kind: "admin", Hash: "h", CreatedAt: time.Now()}))
	out := filepath.Join(dir, "backups")
	t0 := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	var paths []string
	for i := range 4 {
		p, err := s.Backup(ctx, out, 2, t0.Add(time.Duration(i)*time.Hour))
		require.NoError(t, err)
		paths = append(paths, p)
	}
	require.Equal(t, filepath.Join(out, "herd-20260102T150405Z.db"), paths[0])
	entries, err := os.ReadDir(out)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.Equal(t, []string{"herd-20260102T170405Z.db", "herd-20260102T180405Z.db"}, names, "the newest two, no temp file")
	c, err := sqlstore.OpenSQLite(ctx, paths[3])
	require.NoError(t, err)
	defer c.Close()
	n, err := c.CountKeys(ctx, "admin")
	require.NoError(t, err)
	require.Equal(t, 1, n, "the copy holds the data")

	// A temp file left by a backup killed midway is replaced, never kept.
	require.NoError(t, os.WriteFile(filepath.Join(out, "herd-20260102T190405Z.db.tmp"), []byte("junk"), 0o600))
	_, err = s.Backup(ctx, out, 2, t0.Add(4*time.Hour))
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(out, "herd-20260102T190405Z.db.tmp"))
	require.ErrorIs(t, err, os.ErrNotExist)
}
