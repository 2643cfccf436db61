-- Each encode task knows how many seconds of the source it encodes (a
-- chunk its own share), so the queue's encode backlog is one aggregate over
-- the open tasks instead of a decode of every open job's source JSON.
-- Existing encode tasks take their job's probed duration (0 when unknown).
ALTER TABLE tasks ADD COLUMN seconds DOUBLE PRECISION NOT NULL DEFAULT 0;
UPDATE tasks SET seconds = COALESCE((jobs.source::jsonb ->> 'duration')::double precision, 0)
  FROM jobs WHERE jobs.id = tasks.job_id AND tasks.kind = 'encode';
