-- Published outputs by asset and profile: a stream's name stays the same
-- while the job behind it changes. When a job succeeds it becomes its
-- stream's current job (unless a newer one is already), in the same
-- transaction, and the job it displaced is marked replaced; its outputs
-- are removed a while later (--keep-replaced), so that a player already
-- playing them is not cut off.
CREATE TABLE streams (
    asset_id    TEXT NOT NULL,
    profile     TEXT NOT NULL,
    job_id      TEXT NOT NULL,
    switched_at BIGINT NOT NULL,
    PRIMARY KEY (asset_id, profile)
);
ALTER TABLE jobs ADD COLUMN replaces TEXT NOT NULL DEFAULT '';     -- the job a campaign made this one to redo
ALTER TABLE jobs ADD COLUMN replaced_by TEXT NOT NULL DEFAULT '';  -- the job now current for this one's stream
ALTER TABLE jobs ADD COLUMN replaced_at BIGINT;
ALTER TABLE jobs ADD COLUMN outputs_removed_at BIGINT;
CREATE INDEX jobs_replaced ON jobs (replaced_at) WHERE replaced_at IS NOT NULL AND outputs_removed_at IS NULL;

-- Every stream already published: its newest succeeded job.
INSERT INTO streams (asset_id, profile, job_id, switched_at)
SELECT j.asset_id, j.profile, j.id, COALESCE(j.finished_at, j.created_at) FROM jobs j
WHERE j.state = 'succeeded' AND NOT EXISTS (
    SELECT 1 FROM jobs k WHERE k.asset_id = j.asset_id AND k.profile = j.profile AND k.state = 'succeeded'
      AND (k.profile_version > j.profile_version OR (k.profile_version = j.profile_version
        AND (k.created_at > j.created_at OR (k.created_at = j.created_at AND k.id > j.id)))));

-- Re-encode campaigns: every item is one stream's current job when the
-- campaign was made, and the job made to redo it (new_job_id, '' until
-- queued; note says why one was skipped).
CREATE TABLE campaigns (
    id           TEXT PRIMARY KEY,
    profile      TEXT NOT NULL,
    from_version BIGINT NOT NULL,
    to_version   BIGINT NOT NULL,
    state        TEXT NOT NULL,          -- running | paused | canceled | done
    filter       TEXT NOT NULL DEFAULT '', -- JSON: library, query, labels
    run_window   TEXT NOT NULL DEFAULT '', -- "HH:MM-HH:MM" local time; '' always
    max_running  BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    finished_at  BIGINT
);
CREATE TABLE campaign_items (
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    job_id      TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    new_job_id  TEXT NOT NULL DEFAULT '',
    note        TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (campaign_id, job_id)
);
CREATE INDEX campaign_items_new_job ON campaign_items (new_job_id) WHERE new_job_id <> '';
