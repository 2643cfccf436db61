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

	_ "modernc.org/sqlite" // the pure-Go SQLite driver, registered as "sqlite"
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

// New wraps an open database in a Store (used by the PostgreSQL opener).
func New(db *sql.DB, d Dialect) *Store { return &Store{w: db, r: db, d: d} }
