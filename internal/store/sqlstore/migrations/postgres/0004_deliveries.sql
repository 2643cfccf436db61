-- Every attempt to deliver a finished job somewhere (a library folder, a
-- media-server refresh, a webhook), so the job shows what happened after it.
CREATE TABLE deliveries (
  id        BIGSERIAL PRIMARY KEY,
  job_id    TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  publisher TEXT NOT NULL,
  type      TEXT NOT NULL,
  event     TEXT NOT NULL,
  attempt   BIGINT NOT NULL,
  ok        INTEGER NOT NULL,
  final     INTEGER NOT NULL,
  detail    TEXT NOT NULL DEFAULT '',
  at        BIGINT NOT NULL
);
CREATE INDEX deliveries_job ON deliveries (job_id, id);
