package testenv

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/store/sqlstore"
)

// SQLite opens a new SQLite store in a folder of its own, closed when the
// test ends.
func SQLite(t testing.TB) *sqlstore.Store {
	t.Helper()
	return sqliteAt(t, t.TempDir())
}

// Stores is what a server on one machine keeps its state in, as it lays
// them out in its data folder dir: the SQLite store dir/herd.db and the
// local blob store dir/blobs.
func Stores(t testing.TB, dir string) (*sqlstore.Store, *blob.Local) {
	t.Helper()
	blobs, err := blob.NewLocal(filepath.Join(dir, "blobs"))
	require.NoError(t, err)
	return sqliteAt(t, dir), blobs
}

func sqliteAt(t testing.TB, dir string) *sqlstore.Store {
	t.Helper()
	st, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(dir, "herd.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}
