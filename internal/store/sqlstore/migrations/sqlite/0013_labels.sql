-- Labels on jobs, which subscriptions may filter on; the watch folder a job
-- came from, which its events name; and an event's own data (a progress
-- step, a chunk), for the events that are not about the job as a whole;
-- and the last tenth of progress a job's job.progress events reached, so
-- each is written once, whatever retries and concurrent heartbeats do.
ALTER TABLE jobs ADD COLUMN labels TEXT NOT NULL DEFAULT '';  -- JSON object; empty: none
ALTER TABLE jobs ADD COLUMN watch TEXT NOT NULL DEFAULT '';   -- JSON {folder, file}; empty: not from a watch folder
ALTER TABLE subscriptions ADD COLUMN labels TEXT NOT NULL DEFAULT ''; -- JSON object a job's labels must include
ALTER TABLE outbox ADD COLUMN data TEXT NOT NULL DEFAULT '';  -- JSON; empty: none
ALTER TABLE jobs ADD COLUMN progress_step INTEGER NOT NULL DEFAULT 0;
