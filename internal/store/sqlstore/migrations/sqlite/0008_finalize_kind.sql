-- The last step, which moves a job's verified outputs into place, was
-- called "publish", the word publishers (libraries, media servers,
-- webhooks) use for delivery. It is "finalize" now; tasks queued, running
-- or done under the old name take the new one. Workers of protocol version
-- 2 still get the old name from the server (internal/api).
UPDATE tasks SET kind = 'finalize' WHERE kind = 'publish';
