package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// BackupPrefix and BackupSuffix frame the names of SQLite backups:
// herd-20260102T150405Z.db.
const (
	BackupPrefix = "herd-"
	BackupSuffix = ".db"
)

// Backup writes a consistent copy of a SQLite store into dir (VACUUM INTO:
// a snapshot, taken while the server keeps writing), checks the copy with
// PRAGMA integrity_check, and only then gives it its final name and removes
// all but the newest keep backups. It returns the new backup's path. A
// PostgreSQL store is refused: back it up with pg_dump.
func (s *Store) Backup(ctx context.Context, dir string, keep int, now time.Time) (string, error) {
	if s.d.Name != SQLite.Name {
		return "", errors.New("herd backup copies SQLite databases; back up PostgreSQL with pg_dump -Fc (deploy/kustomize's backup CronJob does)")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", fmt.Errorf("create backup folder: %w", err)
	}
	final := filepath.Join(dir, BackupPrefix+now.UTC().Format("20060102T150405Z")+BackupSuffix)
	tmp := final + ".tmp"
	_ = os.Remove(tmp)
	if _, err := s.w.ExecContext(ctx, `VACUUM INTO ?`, tmp); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("copy the database: %w", err)
	}
	if err := verifySQLite(ctx, tmp); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("the copy failed its check, so older backups were kept: %w", err)
	}
	if err := syncFile(tmp); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", err
	}
	return final, pruneBackups(dir, keep)
}

func verifySQLite(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return err
	}
	defer db.Close()
	var res string
	if err := db.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&res); err != nil {
		return err
	}
	if res != "ok" {
		return fmt.Errorf("integrity_check: %s", res)
	}
	var v sql.NullInt64
	if err := db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil || !v.Valid {
		return fmt.Errorf("no schema version in the copy: %v", err)
	}
	return nil
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// pruneBackups keeps the newest keep backups in dir (names sort by time).
func pruneBackups(dir string, keep int) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, BackupPrefix) && strings.HasSuffix(n, BackupSuffix) && e.Type().IsRegular() {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for len(names) > max(keep, 1) {
		if err := os.Remove(filepath.Join(dir, names[0])); err != nil {
			return err
		}
		names = names[1:]
	}
	return nil
}
