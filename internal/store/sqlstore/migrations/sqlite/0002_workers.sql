CREATE TABLE workers (
  name       TEXT PRIMARY KEY,
  key_id     TEXT NOT NULL,
  state      TEXT NOT NULL DEFAULT 'active',
  caps       TEXT NOT NULL DEFAULT '[]',
  slots      INTEGER NOT NULL DEFAULT 1,
  version    TEXT NOT NULL DEFAULT '',
  last_seen  INTEGER,
  created_at INTEGER NOT NULL
);
