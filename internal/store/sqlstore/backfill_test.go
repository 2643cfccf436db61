package sqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/store/pgtest"
	"github.com/herdhq/herd/internal/store/sqlstore"
)

// migrateBefore applies a dialect's migrations up to the one named name,
// leaving the database as the herd before that migration left it.
func migrateBefore(t *testing.T, db *sql.DB, dialect, name string) {
	t.Helper()
	ms, err := sqlstore.Migrations(dialect)
	require.NoError(t, err)
	_, err = db.Exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`)
	require.NoError(t, err)
	for _, m := range ms {
		if strings.HasSuffix(m.Name, "_"+name+".sql") {
			return
		}
		_, err := db.Exec(m.SQL)
		require.NoError(t, err, m.Name)
		_, err = db.Exec(fmt.Sprintf(`INSERT INTO schema_migrations (version, applied_at) VALUES (%d, 0)`, m.Version))
		require.NoError(t, err)
	}
	t.Fatalf("no %s migration", name)
}

// testSecondsBackfill: open encode tasks of jobs queued before the seconds
// column existed take their job's probed duration, so the backlog does not
// drop to zero on upgrade.
func testSecondsBackfill(t *testing.T, db *sql.DB, dialect string, open func() *sqlstore.Store) {
	ctx := context.Background()
	migrateBefore(t, db, dialect, "task_seconds")
	_, err := db.Exec(`INSERT INTO assets (id, name, size, sha256, blob_key, created_at) VALUES ('a1', 'x.mp4', 1, 's1', 'sources/s1', 0);
INSERT INTO jobs (id, state, profile, profile_version, idempotency_key, asset_id, source, created_at, updated_at) VALUES
 ('j1', 'running', 'web-hls', 1, 'i1', 'a1', '{"asset_id":"a1","duration":90.5}', 0, 0),
 ('j2', 'queued', 'web-hls', 1, 'i2', 'a1', '{"asset_id":"a1"}', 0, 0);
INSERT INTO tasks (id, job_id, seq, kind, state, max_attempts, profile, weight, progress, created_at) VALUES
 ('t1', 'j1', 0, 'probe', 'succeeded', 3, 'web-hls', 0.05, 1, 0),
 ('t2', 'j1', 1, 'encode', 'running', 3, 'web-hls', 0.75, 0.5, 0),
 ('t3', 'j2', 0, 'probe', 'queued', 3, 'web-hls', 0.05, 0, 0),
 ('t4', 'j2', 1, 'encode', 'pending', 3, 'web-hls', 0.75, 0, 0);`)
	require.NoError(t, err)
	require.NoError(t, db.Close())

	s := open()
	defer s.Close()
	for id, want := range map[string]map[job.Kind]float64{
		"j1": {job.KindProbe: 0, job.KindEncode: 90.5},
		"j2": {job.KindProbe: 0, job.KindEncode: 0}, // not probed: unknown
	} {
		ts, err := s.Tasks(ctx, id)
		require.NoError(t, err)
		require.Len(t, ts, 2)
		for _, x := range ts {
			require.InDelta(t, want[x.Kind], x.Seconds, 1e-9, "%s %s", id, x.Kind)
		}
	}
	d, err := s.Depth(ctx)
	require.NoError(t, err)
	require.Equal(t, store.Depth{JobsQueued: 1, JobsRunning: 1, QueuedTasks: 1, RunningTasks: 1, EncodeBacklog: 90.5 / 2}, d)
}

// testFinalizeRename: tasks stored under the last step's old kind,
// "publish", queued or done, are finalize tasks after the upgrade, and a
// queued one is claimed as one.
func testFinalizeRename(t *testing.T, db *sql.DB, dialect string, open func() *sqlstore.Store) {
	ctx := context.Background()
	migrateBefore(t, db, dialect, "finalize_kind")
	_, err := db.Exec(`INSERT INTO assets (id, name, size, sha256, blob_key, created_at) VALUES ('a1', 'x.mp4', 1, 's1', 'sources/s1', 0);
INSERT INTO jobs (id, state, profile, profile_version, idempotency_key, asset_id, source, created_at, updated_at) VALUES
 ('j1', 'succeeded', 'web-hls', 1, 'i1', 'a1', '{"asset_id":"a1"}', 0, 0),
 ('j2', 'running', 'web-hls', 1, 'i2', 'a1', '{"asset_id":"a1"}', 0, 0);
INSERT INTO tasks (id, job_id, seq, kind, state, max_attempts, profile, weight, progress, created_at) VALUES
 ('t1', 'j1', 0, 'verify', 'succeeded', 3, 'web-hls', 0.1, 1, 0),
 ('t2', 'j1', 1, 'publish', 'succeeded', 3, 'web-hls', 0.05, 1, 0),
 ('t3', 'j2', 0, 'verify', 'succeeded', 3, 'web-hls', 0.1, 1, 0),
 ('t4', 'j2', 1, 'publish', 'queued', 3, 'web-hls', 0.05, 0, 0);`)
	require.NoError(t, err)
	require.NoError(t, db.Close())

	s := open()
	defer s.Close()
	for _, id := range []string{"j1", "j2"} {
		ts, err := s.Tasks(ctx, id)
		require.NoError(t, err)
		require.Len(t, ts, 2)
		require.Equal(t, []job.Kind{job.KindVerify, job.KindFinalize}, []job.Kind{ts[0].Kind, ts[1].Kind}, id)
	}
	c, err := s.Claim(ctx, store.ClaimRequest{Owner: "local/1", Worker: "local", Now: time.Now(), TTL: time.Minute})
	require.NoError(t, err)
	require.NotNil(t, c)
	require.Equal(t, "t4", c.Task.ID)
	require.Equal(t, job.KindFinalize, c.Task.Kind)
}

// upgrade is a test of one migration: it gets a database of a dialect
// with no store open on it, and a way to open the store (which migrates).
type upgrade func(t *testing.T, db *sql.DB, dialect string, open func() *sqlstore.Store)

// onBoth runs an upgrade test on SQLite and on PostgreSQL.
func onBoth(t *testing.T, test upgrade) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "herd.db")
		db, err := sql.Open("sqlite", "file:"+path)
		require.NoError(t, err)
		test(t, db, "sqlite", func() *sqlstore.Store {
			s, err := sqlstore.OpenSQLite(context.Background(), path)
			require.NoError(t, err)
			return s
		})
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		dsn := pgtest.DSN(t)
		db, err := sql.Open("pgx", dsn)
		require.NoError(t, err)
		test(t, db, "postgres", func() *sqlstore.Store {
			s, err := sqlstore.OpenPostgres(context.Background(), dsn)
			require.NoError(t, err)
			return s
		})
	})
}

func TestSecondsBackfill(t *testing.T) { onBoth(t, testSecondsBackfill) }

func TestFinalizeRename(t *testing.T) { onBoth(t, testFinalizeRename) }
