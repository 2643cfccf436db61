package api

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the pgx driver for database/sql
	"github.com/stretchr/testify/require"
	tusd "github.com/tus/tusd/v2/pkg/handler"

	"github.com/herdhq/herd/internal/store/pgtest"
)

// Two replicas share an upload's lock through PostgreSQL: one holds it,
// the other waits, asks the holder to let go (the holder's request is told
// to end), and gets it once it is released, or once the holder's
// connection dies with its replica. Other uploads' locks are independent.
func TestPGLockerAcrossReplicas(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	replica := func() *pgLocker {
		db, err := sql.Open("pgx", dsn)
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		l := newPGLocker(db, log)
		go l.listen(ctx)
		return l
	}
	one, two := replica(), replica()
	lockWithin := func(l *pgLocker, id string, d time.Duration, release func()) (tusd.Lock, error) {
		k, err := l.NewLock(id)
		require.NoError(t, err)
		lctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return k, k.Lock(lctx, release)
	}

	asked := make(chan struct{}, 10)
	held, err := lockWithin(one, "u1", time.Second, func() { asked <- struct{}{} })
	require.NoError(t, err)
	_, err = lockWithin(two, "u1", 2*time.Second, func() {})
	require.ErrorIs(t, err, tusd.ErrLockTimeout, "a held lock is not taken")
	select {
	case <-asked:
	case <-time.After(5 * time.Second):
		t.Fatal("the holder was never asked to let go")
	}
	other, err := lockWithin(two, "u2", time.Second, func() {})
	require.NoError(t, err, "another upload's lock is free")
	require.NoError(t, other.Unlock())

	require.NoError(t, held.Unlock())
	again, err := lockWithin(two, "u1", time.Second, func() {})
	require.NoError(t, err, "a released lock is taken")
	require.NoError(t, again.Unlock())

	// The holder's replica dies: its connection ends, and the lock with it.
	dead, err := lockWithin(one, "u3", time.Second, func() {})
	require.NoError(t, err)
	var pid int
	require.NoError(t, dead.(*pgLock).conn.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
	_, err = two.db.ExecContext(ctx, `SELECT pg_terminate_backend($1)`, pid)
	require.NoError(t, err)
	taken, err := lockWithin(two, "u3", 5*time.Second, func() {})
	require.NoError(t, err, "a dead replica's lock is taken")
	require.NoError(t, taken.Unlock())
	_ = dead.Unlock() // its connection is gone: the unlock fails, the lock is not left behind
}
