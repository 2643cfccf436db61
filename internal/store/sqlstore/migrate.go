package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL driver, registered as "pgx"
	_ "modernc.org/sqlite"             // the pure-Go SQLite driver, registered as "sqlite"
)

//go:embed migrations
var migrationsFS embed.FS

// Migration is one numbered schema step.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations returns a dialect's migrations in order, refusing a duplicate or a gap.
func Migrations(dialect string) ([]Migration, error) {
	return readMigrations(migrationsFS, "migrations/"+dialect)
}

func readMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("migration %s: name must start with a number and an underscore", e.Name())
		}
		b, err := fs.ReadFile(fsys, dir+"/"+e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration: %w", err)
		}
		ms = append(ms, Migration{Version: v, Name: e.Name(), SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migration %s: expected number %d (duplicate or gap)", m.Name, i+1)
		}
	}
	return ms, nil
}

// Migrate applies every migration not yet applied, each in its own transaction.
// It returns the versions it applied.
func Migrate(ctx context.Context, db *sql.DB, d Dialect) ([]int, error) {
	ms, err := Migrations(d.Name)
	if err != nil {
		return nil, err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return nil, fmt.Errorf("create schema_migrations: %w", err)
	}
	var applied []int
	for _, m := range ms {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return applied, fmt.Errorf("begin migration: %w", err)
		}
		var n int
		q := `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`
		if d.Dollar {
			q = strings.Replace(q, "?", "$1", 1)
		}
		if err := tx.QueryRowContext(ctx, q, m.Version).Scan(&n); err != nil {
			_ = tx.Rollback()
			return applied, fmt.Errorf("check migration %d: %w", m.Version, err)
		}
		if n > 0 {
			_ = tx.Rollback()
			continue
		}
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			_ = tx.Rollback()
			return applied, fmt.Errorf("apply migration %s: %w", m.Name, err)
		}
		ins := `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`
		if d.Dollar {
			ins = `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`
		}
		if _, err := tx.ExecContext(ctx, ins, m.Version, time.Now().UnixMilli()); err != nil {
			_ = tx.Rollback()
			return applied, fmt.Errorf("record migration %d: %w", m.Version, err)
		}
		if err := tx.Commit(); err != nil {
			return applied, fmt.Errorf("commit migration %d: %w", m.Version, err)
		}
		applied = append(applied, m.Version)
	}
	return applied, nil
}

// SQLite is the embedded dialect.
var SQLite = Dialect{Name: "sqlite"}

// OpenSQLite opens (creating when missing) the database file at path in WAL
// mode, applies migrations, and returns a store with one writer connection.
func OpenSQLite(ctx context.Context, path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create database folder: %w", err)
	}
	dsn := func(extra string) string {
		return "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)" + extra
	}
	w, err := sql.Open("sqlite", dsn("&_txlock=immediate"))
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	if _, err := Migrate(ctx, w, SQLite); err != nil {
		_ = w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", dsn("&_pragma=query_only(1)"))
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	r.SetMaxOpenConns(4)
	return &Store{w: w, r: r, d: SQLite}, nil
}

// Postgres says whether the store is on PostgreSQL.
func (s *Store) Postgres() bool { return s.d.Name == Postgres.Name }

// OpenPostgresPool opens a pool of at most maxConns connections to the
// database at dsn, apart from the store's own (for what holds a connection
// long, such as upload locks, so that it never starves the store).
func OpenPostgresPool(dsn string, maxConns int) (*sql.DB, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(min(maxConns, 4))
	return db, nil
}

// New wraps an open database in a Store (used by the PostgreSQL opener).
func New(db *sql.DB, d Dialect) *Store { return &Store{w: db, r: db, d: d} }

// Postgres is the dialect for PostgreSQL: claims skip rows other claimers hold.
var Postgres = Dialect{Name: "postgres", Dollar: true, ClaimLock: "FOR UPDATE SKIP LOCKED", RowLock: "FOR UPDATE"}

// migrationLockID keys the advisory lock that serialises migrations when
// several server replicas start at once.
const migrationLockID = 0x68657264 // "herd"

// OpenPostgres connects through pgx, applies migrations (one replica at a
// time), and returns a store.
func OpenPostgres(ctx context.Context, dsn string) (*Store, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(8)
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := db.Conn(pctx)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(pctx, `SELECT pg_advisory_lock($1)`, migrationLockID); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("lock migrations: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrationLockID) //nolint:errcheck // released with the connection anyway
	if _, err := Migrate(ctx, db, Postgres); err != nil {
		_ = db.Close()
		return nil, err
	}
	return New(db, Postgres), nil
}

// Open opens the database named by a --database value: a postgres:// URL, or
// else the path of a SQLite file.
func Open(ctx context.Context, database string) (*Store, error) {
	if strings.HasPrefix(database, "postgres://") || strings.HasPrefix(database, "postgresql://") {
		return OpenPostgres(ctx, database)
	}
	return OpenSQLite(ctx, strings.TrimPrefix(database, "sqlite://"))
}

// SchemaVersion is the newest migration applied.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	if err := s.r.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return int(v.Int64), nil
}

// Optimize refreshes the planner's statistics (what autovacuum does on a
// live PostgreSQL server a little later; SQLite's PRAGMA optimize).
func (s *Store) Optimize(ctx context.Context) error {
	q := `PRAGMA optimize`
	if s.d.Name == Postgres.Name {
		q = `ANALYZE tasks, jobs`
	}
	if _, err := s.w.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("optimize database: %w", err)
	}
	return nil
}
