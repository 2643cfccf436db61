-- A library's health checks run as worker tasks: each file's check is a
-- job (one check task, read in place where the library is mounted), and
-- check_job names the file's latest one.
ALTER TABLE library_files ADD COLUMN check_job TEXT NOT NULL DEFAULT '';
