-- Claims order by (run_after, created_at, seq): with seq in the index the
-- next task is read from the index instead of sorting every queued task.
DROP INDEX tasks_claim;
CREATE INDEX tasks_claim ON tasks (state, run_after, created_at, seq);

-- A queue table changes fast: refresh the planner's statistics after 1 % of
-- it changed rather than 10 %, so claims keep using the index above.
ALTER TABLE tasks SET (autovacuum_analyze_scale_factor = 0.01, autovacuum_analyze_threshold = 200);
