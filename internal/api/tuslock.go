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
// so a replica that dies lets go with its connection; the connection is
// checked every pingEvery, and a lock whose connection is gone (a network
// cut, a failover, idle_session_timeout) ends its request. The connections
// come from a pool of their own (the caller's db, which the store does not
// share: a request holds one for as long as it sends bytes), so uploads
// never starve the queue. A request that finds the lock held asks the
// holder to let go (NOTIFY on releaseChannel; each replica LISTENs and
// hands the request to its holder, which ends its request, as tusd's own
// lockers do: a client that lost its connection mid-PATCH and resumes on
// another replica need not wait for the dead request to time out), then
// tries again every acquireEvery until its context ends, holding no
// connection in between. PgBouncer in transaction mode cannot hold
// session locks: point the server at PostgreSQL or a session-mode pool.
type pgLocker struct {
	db  *sql.DB
	log *slog.Logger

	mu   sync.Mutex
	held map[string]func() // upload id → its holder's release request
}

// releaseChannel is the channel on which a request asks for an upload's lock.
const releaseChannel = "herd_upload_release"

const (
	acquireEvery = 250 * time.Millisecond // how often a request waiting for a lock tries again
	pingEvery    = 10 * time.Second       // how often a held lock's connection is checked
)

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
	mu   sync.Mutex // the connection: the pings and Unlock
	conn *sql.Conn
	stop chan struct{}
}

// quietKey marks a context whose lock request must not disturb a holder.
type quietKey struct{}

// quietly makes a lock taken with ctx wait for the holder instead of
// asking it to let go: for the sweep, which must not stop a live request.
func quietly(ctx context.Context) context.Context { return context.WithValue(ctx, quietKey{}, true) }

// Lock implements tusd.Lock.
func (k *pgLock) Lock(ctx context.Context, requestRelease func()) error {
	quiet := ctx.Value(quietKey{}) != nil
	for {
		ok, err := k.try(ctx, quiet)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return tusd.ErrLockTimeout
			}
			return fmt.Errorf("upload lock: %w", err)
		case ok:
			k.l.mu.Lock()
			k.l.held[k.id] = requestRelease
			k.l.mu.Unlock()
			k.stop = make(chan struct{})
			go k.ping(requestRelease, k.stop) //nolint:gosec // G118: the lock outlives the context it was taken with; Unlock stops the ping
			return nil
		}
		select {
		case <-ctx.Done():
			return tusd.ErrLockTimeout
		case <-time.After(acquireEvery):
		}
	}
}

// try takes the lock once; where another holds it, it asks the holder to
// let go (unless quiet) on the same connection and gives that back.
func (k *pgLock) try(ctx context.Context, quiet bool) (bool, error) {
	conn, err := k.l.db.Conn(ctx)
	if err != nil {
		return false, err
	}
	var ok bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, lockKey(k.id)).Scan(&ok); err != nil {
		discard(conn) // whether it took the lock is unknown
		return false, err
	}
	if ok {
		k.conn = conn
		return true, nil
	}
	if !quiet {
		if _, err := conn.ExecContext(ctx, `SELECT pg_notify($1, $2)`, releaseChannel, k.id); err != nil && ctx.Err() == nil {
			k.l.log.Warn("could not ask for an upload's lock", "upload", k.id, "err", err)
		}
	}
	return false, conn.Close()
}

// ping checks the held lock's connection until stop closes; where it is
// gone, so is the lock, and the request that holds it is told to end.
func (k *pgLock) ping(requestRelease func(), stop chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(pingEvery):
		}
		k.mu.Lock()
		var err error
		if k.conn != nil {
			ctx, cancel := context.WithTimeout(context.Background(), pingEvery)
			err = k.conn.PingContext(ctx)
			cancel()
		}
		k.mu.Unlock()
		if err != nil {
			k.l.log.Warn("an upload's lock was lost with its database connection; its request ends", "upload", k.id, "err", err)
			requestRelease()
			return
		}
	}
}

// Unlock implements tusd.Lock. Where the database does not answer, the
// connection is dropped, which releases the lock as well.
func (k *pgLock) Unlock() error {
	k.l.mu.Lock()
	delete(k.l.held, k.id)
	k.l.mu.Unlock()
	if k.stop != nil {
		close(k.stop)
		k.stop = nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
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
