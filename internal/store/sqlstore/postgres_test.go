package sqlstore_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/store/pgtest"
	"github.com/herdhq/herd/internal/store/sqlstore"
	"github.com/herdhq/herd/internal/store/storetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestPostgres(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := sqlstore.Open(context.Background(), pgtest.DSN(t))
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestPostgresMigrateTwice(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	for range 2 {
		s, err := sqlstore.OpenPostgres(context.Background(), dsn)
		require.NoError(t, err, "a second start finds the schema in place")
		require.NoError(t, s.Ping(context.Background()))
		require.NoError(t, s.Close())
	}
}
