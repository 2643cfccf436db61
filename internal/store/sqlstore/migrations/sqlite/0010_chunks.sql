-- Split-and-stitch: a chunk task knows which chunk it encodes, and a job
-- may override its profile's chunk_seconds (NULL: the profile's).
ALTER TABLE tasks ADD COLUMN chunk INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN chunk_seconds REAL;
