-- Delivery for every job: the publishers a submitter named, and webhook
-- subscriptions that hear of every job's life cycle. A job's events are
-- written to the outbox in the transaction that changes its state, so a
-- server killed before it delivered them delivers them after restart.
ALTER TABLE jobs ADD COLUMN publish TEXT NOT NULL DEFAULT '';

CREATE TABLE subscriptions (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    url           TEXT NOT NULL,
    secret        TEXT NOT NULL,
    events        TEXT NOT NULL DEFAULT '', -- comma-separated event types; empty: the job life cycle
    profiles      TEXT NOT NULL DEFAULT '', -- comma-separated profiles; empty: every profile
    origin        TEXT NOT NULL DEFAULT 'api', -- api | config
    created_at    INTEGER NOT NULL,
    failing_since INTEGER,
    paused_at     INTEGER,
    note          TEXT NOT NULL DEFAULT ''
);

CREATE TABLE outbox (
    id           TEXT PRIMARY KEY,
    event_id     TEXT NOT NULL,
    event        TEXT NOT NULL,
    job_id       TEXT NOT NULL,
    target       TEXT NOT NULL, -- a publisher's name, or a subscription's id
    subscription INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    next_try     INTEGER NOT NULL,
    attempt      INTEGER NOT NULL DEFAULT 0,
    lease_until  INTEGER,
    lease_owner  TEXT NOT NULL DEFAULT '', -- the server holding it
    done         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_due ON outbox (done, next_try);
CREATE INDEX outbox_event ON outbox (event_id);
CREATE INDEX outbox_target ON outbox (target, done);
