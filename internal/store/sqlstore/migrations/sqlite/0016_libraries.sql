-- Libraries: every file herd found in a library (path inside it, slash
-- separated), what it was when last probed (size, mtime in ns, inode: a
-- file unchanged since is not probed again), what became of it (state),
-- and the journal of its replacement (step), so that a restart finishes a
-- replacement a crash cut short; and the last health check's result
-- (check_state: pending, ok or damaged; check_note: the first error).
CREATE TABLE library_files (
    library     TEXT NOT NULL,
    path        TEXT NOT NULL,
    size        INTEGER NOT NULL,
    mtime       INTEGER NOT NULL,
    inode       INTEGER NOT NULL,
    state       TEXT NOT NULL,
    facts       TEXT NOT NULL DEFAULT '',
    job_id      TEXT NOT NULL DEFAULT '',
    note        TEXT NOT NULL DEFAULT '',
    new_size    INTEGER NOT NULL DEFAULT 0,
    new_sha256  TEXT NOT NULL DEFAULT '',
    step        TEXT NOT NULL DEFAULT '',
    trash       TEXT NOT NULL DEFAULT '',
    check_state TEXT NOT NULL DEFAULT '',
    check_note  TEXT NOT NULL DEFAULT '',
    scanned_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (library, path)
);
CREATE INDEX library_files_state ON library_files (library, state);
CREATE INDEX library_files_job ON library_files (job_id) WHERE job_id <> '';
CREATE INDEX library_files_check ON library_files (library, check_state) WHERE check_state = 'pending';

-- Originals a replacement moved to a library's trash folder, removed
-- once keep_originals has passed.
CREATE TABLE library_trash (
    library    TEXT NOT NULL,
    path       TEXT NOT NULL,
    original   TEXT NOT NULL,
    trashed_at INTEGER NOT NULL,
    PRIMARY KEY (library, path)
);
