CREATE TABLE workers (
  name       TEXT PRIMARY KEY,
  key_id     TEXT NOT NULL,
  state      TEXT NOT NULL DEFAULT 'active',
  caps       TEXT NOT NULL DEFAULT '[]',
  slots      BIGINT NOT NULL DEFAULT 1,
  version    TEXT NOT NULL DEFAULT '',
  last_seen  BIGINT,
  created_at BIGINT NOT NULL
);
