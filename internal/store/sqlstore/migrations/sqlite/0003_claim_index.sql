-- Claims order by (run_after, created_at, seq): with seq in the index the
-- next task is read from the index instead of sorting every queued task.
DROP INDEX tasks_claim;
CREATE INDEX tasks_claim ON tasks (state, run_after, created_at, seq);
