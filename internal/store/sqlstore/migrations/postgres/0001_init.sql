CREATE TABLE assets (
  id         TEXT PRIMARY KEY,
  name       TEXT NOT NULL,
  size       BIGINT NOT NULL,
  sha256     TEXT NOT NULL UNIQUE,
  blob_key   TEXT NOT NULL,
  created_at BIGINT NOT NULL
);

CREATE TABLE jobs (
  id              TEXT PRIMARY KEY,
  state           TEXT NOT NULL,
  profile         TEXT NOT NULL,
  profile_version BIGINT NOT NULL,
  idempotency_key TEXT NOT NULL,
  asset_id        TEXT NOT NULL REFERENCES assets(id),
  source          TEXT NOT NULL,
  plan            TEXT,
  outputs         TEXT,
  progress        DOUBLE PRECISION NOT NULL DEFAULT 0,
  speed           DOUBLE PRECISION NOT NULL DEFAULT 0,
  error           TEXT NOT NULL DEFAULT '',
  error_code      TEXT NOT NULL DEFAULT '',
  created_at      BIGINT NOT NULL,
  started_at      BIGINT,
  finished_at     BIGINT,
  updated_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX jobs_live_key ON jobs (idempotency_key) WHERE state NOT IN ('failed', 'canceled');
CREATE INDEX jobs_created ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_state_created ON jobs (state, created_at DESC, id DESC);

CREATE TABLE tasks (
  id            TEXT PRIMARY KEY,
  job_id        TEXT NOT NULL REFERENCES jobs(id),
  seq           BIGINT NOT NULL,
  kind          TEXT NOT NULL,
  state         TEXT NOT NULL,
  depends_on    TEXT NOT NULL DEFAULT '[]',
  attempt       BIGINT NOT NULL DEFAULT 0,
  max_attempts  BIGINT NOT NULL,
  profile       TEXT NOT NULL,
  needs         TEXT NOT NULL DEFAULT '',
  weight        DOUBLE PRECISION NOT NULL,
  progress      DOUBLE PRECISION NOT NULL DEFAULT 0,
  speed         DOUBLE PRECISION NOT NULL DEFAULT 0,
  worker        TEXT NOT NULL DEFAULT '',
  lease_owner   TEXT NOT NULL DEFAULT '',
  lease_expires BIGINT,
  fence         BIGINT NOT NULL DEFAULT 0,
  run_after     BIGINT NOT NULL DEFAULT 0,
  error         TEXT NOT NULL DEFAULT '',
  started_at    BIGINT,
  finished_at   BIGINT,
  commands      TEXT NOT NULL DEFAULT '[]',
  result        TEXT,
  created_at    BIGINT NOT NULL
);
CREATE INDEX tasks_claim ON tasks (state, run_after, created_at);
CREATE INDEX tasks_job ON tasks (job_id, seq);
CREATE INDEX tasks_lease ON tasks (state, lease_expires);

CREATE TABLE keys (
  id         TEXT PRIMARY KEY,
  kind       TEXT NOT NULL,
  name       TEXT NOT NULL,
  hash       TEXT NOT NULL UNIQUE,
  created_at BIGINT NOT NULL,
  expires_at BIGINT,
  revoked    INTEGER NOT NULL DEFAULT 0
);
