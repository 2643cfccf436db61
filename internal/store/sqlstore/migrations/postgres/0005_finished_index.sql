-- The dashboard counts jobs ended per hour (store.Throughput).
CREATE INDEX IF NOT EXISTS jobs_finished_at ON jobs (finished_at);
