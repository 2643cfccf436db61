package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/herdhq/herd/internal/store"
)

const libraryCols = `library, path, size, mtime, inode, state, facts, job_id, note, new_size, new_sha256, step, trash, check_state, check_note, check_job, scanned_at, updated_at`

func scanLibraryFile(sc scanner) (store.LibraryFile, error) {
	var (
		f                store.LibraryFile
		inode            int64
		facts            string
		scanned, updated int64
	)
	err := sc.Scan(&f.Library, &f.Path, &f.Size, &f.MTime, &inode, &f.State, &facts, &f.JobID, &f.Note, &f.NewSize, &f.NewSHA256, &f.Step, &f.Trash, &f.Check, &f.CheckNote, &f.CheckJob, &scanned, &updated)
	f.Inode, f.ScannedAt, f.UpdatedAt = uint64(inode), time.UnixMilli(scanned).UTC(), time.UnixMilli(updated).UTC() //nolint:gosec // G115: the inode's 64 bits, kept in a signed column and read back as they were
	if facts != "" {
		f.Facts = []byte(facts)
	}
	return f, err
}

// LibraryFiles lists what herd knows of a library's files, by path.
func (s *Store) LibraryFiles(ctx context.Context, library string) ([]store.LibraryFile, error) {
	return collect(ctx, s.r, scanLibraryFile, s.q(`SELECT `+libraryCols+` FROM library_files WHERE library = ? ORDER BY path`), library)
}

// LibraryFilesIn lists a library's files in one of states, oldest change first.
func (s *Store) LibraryFilesIn(ctx context.Context, library string, states ...string) ([]store.LibraryFile, error) {
	if len(states) == 0 {
		return nil, nil
	}
	args := []any{library}
	marks := ""
	for i, st := range states {
		if i > 0 {
			marks += ", "
		}
		marks += "?"
		args = append(args, st)
	}
	return collect(ctx, s.r, scanLibraryFile, s.q(`SELECT `+libraryCols+` FROM library_files WHERE library = ? AND state IN (`+marks+`) ORDER BY updated_at, path`), args...)
}

// PutLibraryFile records a library file as it is now. Its health check
// is set only when the file is new (FinishLibraryCheck records checks).
func (s *Store) PutLibraryFile(ctx context.Context, f store.LibraryFile) error {
	return s.tx(ctx, func(tx *sql.Tx) error { return s.putLibraryFile(ctx, tx, f) })
}

func (s *Store) putLibraryFile(ctx context.Context, tx *sql.Tx, f store.LibraryFile) error {
	ino := int64(f.Inode) //nolint:gosec // G115: the inode's 64 bits in a signed column (scanLibraryFile reads them back)
	_, err := tx.ExecContext(ctx, s.q(`INSERT INTO library_files (`+libraryCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (library, path) DO UPDATE SET size = excluded.size, mtime = excluded.mtime, inode = excluded.inode, state = excluded.state,
		facts = excluded.facts, job_id = excluded.job_id, note = excluded.note, new_size = excluded.new_size, new_sha256 = excluded.new_sha256,
		step = excluded.step, trash = excluded.trash, scanned_at = excluded.scanned_at, updated_at = excluded.updated_at`),
		f.Library, f.Path, f.Size, f.MTime, ino, f.State, string(f.Facts), f.JobID, f.Note, f.NewSize, f.NewSHA256, f.Step, f.Trash, f.Check, f.CheckNote, f.CheckJob, ms(f.ScannedAt), ms(f.UpdatedAt))
	if err != nil {
		return fmt.Errorf("put library file: %w", err)
	}
	return nil
}

// MoveLibraryFile records f in place of the file at from (a replacement
// that changed the file's name), in one transaction.
func (s *Store) MoveLibraryFile(ctx context.Context, from string, f store.LibraryFile) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM library_files WHERE library = ? AND path = ?`), f.Library, from); err != nil {
			return fmt.Errorf("move library file: %w", err)
		}
		return s.putLibraryFile(ctx, tx, f)
	})
}

// DeleteLibraryFile forgets a file that is gone.
func (s *Store) DeleteLibraryFile(ctx context.Context, library, path string) error {
	_, err := s.w.ExecContext(ctx, s.q(`DELETE FROM library_files WHERE library = ? AND path = ?`), library, path)
	if err != nil {
		return fmt.Errorf("delete library file: %w", err)
	}
	return nil
}

// AddLibraryTrash records an original moved to the trash.
func (s *Store) AddLibraryTrash(ctx context.Context, e store.TrashEntry) error {
	_, err := s.w.ExecContext(ctx, s.q(`INSERT INTO library_trash (library, path, original, trashed_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (library, path) DO UPDATE SET original = excluded.original, trashed_at = excluded.trashed_at`), e.Library, e.Path, e.Original, ms(e.TrashedAt))
	if err != nil {
		return fmt.Errorf("add library trash: %w", err)
	}
	return nil
}

// LibraryTrashBefore lists a library's trash entries older than before.
func (s *Store) LibraryTrashBefore(ctx context.Context, library string, before time.Time) ([]store.TrashEntry, error) {
	return collect(ctx, s.r, func(sc scanner) (store.TrashEntry, error) {
		var (
			e  store.TrashEntry
			at int64
		)
		err := sc.Scan(&e.Library, &e.Path, &e.Original, &at)
		e.TrashedAt = time.UnixMilli(at).UTC()
		return e, err
	}, s.q(`SELECT library, path, original, trashed_at FROM library_trash WHERE library = ? AND trashed_at < ? ORDER BY trashed_at`), library, ms(before))
}

// RemoveLibraryTrash forgets a trash entry whose file is gone.
func (s *Store) RemoveLibraryTrash(ctx context.Context, library, path string) error {
	_, err := s.w.ExecContext(ctx, s.q(`DELETE FROM library_trash WHERE library = ? AND path = ?`), library, path)
	if err != nil {
		return fmt.Errorf("remove library trash: %w", err)
	}
	return nil
}

// StartLibraryCheck marks every file of a library for a health check
// (check_state pending) and returns how many, unless a check of the
// library is under way (a file's check is pending): that one is joined,
// and a file it checked already is not checked again (0).
func (s *Store) StartLibraryCheck(ctx context.Context, library string) (int64, error) {
	res, err := s.w.ExecContext(ctx, s.q(`UPDATE library_files SET check_state = 'pending', check_note = '', check_job = ''
		WHERE library = ? AND check_state <> 'pending'
		AND NOT EXISTS (SELECT 1 FROM library_files p WHERE p.library = ? AND p.check_state = 'pending')`), library, library)
	n, err := rowsAffected(res, err)
	if err != nil {
		return 0, fmt.Errorf("start library check: %w", err)
	}
	return n, nil
}

// LibraryCheckPending lists up to limit files of a library whose health
// check waits: those with a check job first (to follow), then the rest.
func (s *Store) LibraryCheckPending(ctx context.Context, library string, limit int) ([]store.LibraryFile, error) {
	return collect(ctx, s.r, scanLibraryFile, s.q(`SELECT `+libraryCols+` FROM library_files WHERE library = ? AND check_state = 'pending'
		ORDER BY check_job = '', path LIMIT ?`), library, limit)
}

// SetLibraryCheckJob records the job that checks a file whose check is
// pending, in place of the job old ("" none); false when the file's check
// is no longer pending with old (or the file is no longer known).
func (s *Store) SetLibraryCheckJob(ctx context.Context, library, path, old, jobID string) (bool, error) {
	res, err := s.w.ExecContext(ctx, s.q(`UPDATE library_files SET check_job = ? WHERE library = ? AND path = ? AND check_state = 'pending' AND check_job = ?`),
		jobID, library, path, old)
	n, err := rowsAffected(res, err)
	if err != nil {
		return false, fmt.Errorf("set library check job: %w", err)
	}
	return n == 1, nil
}

// FinishLibraryCheck records what a file's health check found, when the
// file's check is pending with job jobID ("" for a check that found the
// file had no job to wait for); false otherwise (a newer check, or the
// file gone).
func (s *Store) FinishLibraryCheck(ctx context.Context, library, path, jobID, state, note string) (bool, error) {
	res, err := s.w.ExecContext(ctx, s.q(`UPDATE library_files SET check_state = ?, check_note = ? WHERE library = ? AND path = ? AND check_state = 'pending' AND check_job = ?`),
		state, note, library, path, jobID)
	n, err := rowsAffected(res, err)
	if err != nil {
		return false, fmt.Errorf("finish library check: %w", err)
	}
	return n == 1, nil
}
