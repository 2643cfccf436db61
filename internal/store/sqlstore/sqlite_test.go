package sqlstore_test

import (
	"context"
	"path/filepath"
	"testing"
	"testing/fstest"

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
