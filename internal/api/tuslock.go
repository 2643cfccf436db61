package api

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	tusd "github.com/tus/tusd/v2/pkg/handler"

	"github.com/herdhq/herd/internal/backoff"
)

// pgLocker is tusd's upload lock shared by every server replica on one
// PostgreSQL database (tusd ships only file and memory lockers, each for
// one process). Each lock is a session advisory lock keyed by the upload's
// id, held on a connection of its own while a request works on the upload,
// so a replica that dies lets go with its connection. A request that finds
// the lock held asks the holder to let go (NOTIFY on releaseChannel; each
// replica LISTENs and hands the request to its holder, which ends its
// request, as tusd's own lockers do: a client that lost its connection
// mid-PATCH and resumes on another replica need not wait for the dead
// request to time out), then tries again every acquireEvery until its
// context ends.
type pgLocker struct {
	db  *sql.DB
	log *slog.Logger

	mu   sync.Mutex
	held map[string]func() // upload id → its holder's release request
}

// releaseChannel is the channel on which a request asks for an upload's lock.
const releaseChannel = "herd_upload_release"

// acquireEvery is how often a request waiting for a lock tries again.
const acquireEvery = 250 * time.Millisecond

func newPGLocker(db *sql.DB, log *slog.Logger) *pgLocker {
	return &pgLocker{db: db, log: log, held: map[string]func(){}}
}

// lockKey is the advisory lock's key for an upload: 64 bits of its id's
// hash (two uploads that share one only wait for each other).
func lockKey(id string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("herd upload " + id))
	return int64(h.Sum64()) //nolint:gosec // G115: a hash, any bit pattern is a key
}

// NewLock implements tusd.Locker.
func (l *pgLocker) NewLock(id string) (tusd.Lock, error) {
	return &pgLock{l: l, id: id}, nil
}

type pgLock struct {
	l    *pgLocker
	id   string
	conn *sql.Conn
}

// Lock implements tusd.Lock.
func (k *pgLock) Lock(ctx context.Context, requestRelease func()) error {
	conn, err := k.l.db.Conn(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return tusd.ErrLockTimeout
		}
		return fmt.Errorf("upload lock: %w", err)
	}
	for {
		var ok bool
		err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, lockKey(k.id)).Scan(&ok)
		switch {
		case err != nil:
			discard(conn)
			if ctx.Err() != nil {
				return tusd.ErrLockTimeout
			}
			return fmt.Errorf("upload lock: %w", err)
		case ok:
			k.conn = conn
			k.l.mu.Lock()
			k.l.held[k.id] = requestRelease
			k.l.mu.Unlock()
			return nil
		}
		if _, err := k.l.db.ExecContext(ctx, `SELECT pg_notify($1, $2)`, releaseChannel, k.id); err != nil && ctx.Err() == nil {
			k.l.log.Warn("could not ask for an upload's lock", "upload", k.id, "err", err)
		}
		select {
		case <-ctx.Done():
			_ = conn.Close()
			return tusd.ErrLockTimeout
		case <-time.After(acquireEvery):
		}
	}
}

// Unlock implements tusd.Lock. Where the database does not answer, the
// connection is dropped, which releases the lock as well.
func (k *pgLock) Unlock() error {
	k.l.mu.Lock()
	delete(k.l.held, k.id)
	k.l.mu.Unlock()
	if k.conn == nil {
		return nil
	}
	conn := k.conn
	k.conn = nil
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ok bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_advisory_unlock($1)`, lockKey(k.id)).Scan(&ok); err != nil || !ok {
		discard(conn)
		if err != nil {
			return fmt.Errorf("upload unlock: %w", err)
		}
		return nil
	}
	return conn.Close()
}

// discard closes conn for good rather than giving it back to the pool,
// releasing whatever session locks it holds.
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}

// listen hands release requests to this replica's holders until ctx ends,
// listening again after a lost connection.
func (l *pgLocker) listen(ctx context.Context) {
	for try := 0; ctx.Err() == nil; try++ {
		err := l.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		l.log.Warn("listening for upload lock requests failed; listening again", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(backoff.Delay(time.Second, time.Minute, try)):
		}
	}
}

func (l *pgLocker) listenOnce(ctx context.Context) error {
	conn, err := l.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer discard(conn) // a LISTENing session is not handed to others
	return conn.Raw(func(dc any) error {
		pc, ok := dc.(*stdlib.Conn)
		if !ok {
			return errors.New("not a pgx connection")
		}
		c := pc.Conn()
		if _, err := c.Exec(ctx, "LISTEN "+releaseChannel); err != nil {
			return err
		}
		for {
			n, err := c.WaitForNotification(ctx)
			if err != nil {
				return err
			}
			l.mu.Lock()
			release := l.held[n.Payload]
			l.mu.Unlock()
			if release != nil {
				release()
			}
		}
	})
}
