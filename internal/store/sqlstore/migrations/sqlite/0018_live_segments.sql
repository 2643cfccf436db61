-- The media segments a running hls encode hands over as it makes them, for
-- the job's live (EVENT) playlists. A row is written only while its task's
-- lease holds (fenced), and never changed: a player that saw a segment
-- listed keeps seeing the same one. Part is the chunk (0 unsplit).
CREATE TABLE live_segments (
  job_id     TEXT NOT NULL,
  rendition  INTEGER NOT NULL,
  part       INTEGER NOT NULL,
  seq        INTEGER NOT NULL,
  attempt    TEXT NOT NULL,
  codec      TEXT NOT NULL,
  timescale  INTEGER NOT NULL,
  start      INTEGER NOT NULL,
  duration   INTEGER NOT NULL,
  size       INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (job_id, rendition, part, seq)
);
