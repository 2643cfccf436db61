CREATE TABLE assets (
  id         TEXT PRIMARY KEY,
  name       TEXT NOT NULL,
  size       INTEGER NOT NULL,
  sha256     TEXT NOT NULL UNIQUE,
  blob_key   TEXT NOT NULL,
  created_at INTEGER NOT NULL
);

CREATE TABLE jobs (
  id              TEXT PRIMARY KEY,
  state           TEXT NOT NULL,
  profile         TEXT NOT NULL,
  profile_version INTEGER NOT NULL,
  idempotency_key TEXT NOT NULL,
  asset_id        TEXT NOT NULL REFERENCES assets(id),
  source          TEXT NOT NULL,
  plan            TEXT,
  outputs         TEXT,
  progress        REAL NOT NULL DEFAULT 0,
  speed           REAL NOT NULL DEFAULT 0,
  error           TEXT NOT NULL DEFAULT '',
  error_code      TEXT NOT NULL DEFAULT '',
  created_at      INTEGER NOT NULL,
  started_at      INTEGER,
  finished_at     INTEGER,
  updated_at      INTEGER NOT NULL
);
CREATE UNIQUE INDEX jobs_live_key ON jobs (idempotency_key) WHERE state NOT IN ('failed', 'canceled');
CREATE INDEX jobs_created ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_state_created ON jobs (state, created_at DESC, id DESC);

CREATE TABLE tasks (
  id            TEXT PRIMARY KEY,
  job_id        TEXT NOT NULL REFERENCES jobs(id),
  seq           INTEGER NOT NULL,
  kind          TEXT NOT NULL,
  state         TEXT NOT NULL,
  depends_on    TEXT NOT NULL DEFAULT '[]',
  attempt       INTEGER NOT NULL DEFAULT 0,
  max_attempts  INTEGER NOT NULL,
  profile       TEXT NOT NULL,
  needs         TEXT NOT NULL DEFAULT '',
  weight        REAL NOT NULL,
  progress      REAL NOT NULL DEFAULT 0,
  speed         REAL NOT NULL DEFAULT 0,
  worker        TEXT NOT NULL DEFAULT '',
  lease_owner   TEXT NOT NULL DEFAULT '',
  lease_expires INTEGER,
  fence         INTEGER NOT NULL DEFAULT 0,
  run_after     INTEGER NOT NULL DEFAULT 0,
  error         TEXT NOT NULL DEFAULT '',
  started_at    INTEGER,
  finished_at   INTEGER,
  commands      TEXT NOT NULL DEFAULT '[]',
  result        TEXT,
  created_at    INTEGER NOT NULL
);
CREATE INDEX tasks_claim ON tasks (state, run_after, created_at);
CREATE INDEX tasks_job ON tasks (job_id, seq);
CREATE INDEX tasks_lease ON tasks (state, lease_expires);

CREATE TABLE keys (
  id         TEXT PRIMARY KEY,
  kind       TEXT NOT NULL,
  name       TEXT NOT NULL,
  hash       TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,
  expires_at INTEGER,
  revoked    INTEGER NOT NULL DEFAULT 0
);
