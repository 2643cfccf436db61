-- The job list is ordered by id, newest first (ListJobs), and filtered by
-- state or profile. jobs_state_created orders by created_at, so a filtered
-- page sorted every matching row before taking 50: with 100,000 queued jobs
-- GET /api/v1/jobs?state=queued took 0.9 s on SQLite. These serve the
-- filtered pages in index order and stop after one page.
CREATE INDEX IF NOT EXISTS jobs_state_id ON jobs (state, id DESC);
CREATE INDEX IF NOT EXISTS jobs_profile_id ON jobs (profile, id DESC);
