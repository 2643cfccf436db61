-- Keys have a life cycle. A session names the admin key that made it
-- (parent_id) and ends with it; every key records when it was last used
-- (written at most about once a minute); expired keys are swept by expiry.
ALTER TABLE keys ADD COLUMN parent_id TEXT NOT NULL DEFAULT '';
ALTER TABLE keys ADD COLUMN last_used INTEGER;
CREATE INDEX keys_expires ON keys (expires_at);
-- Sessions made before this migration name no admin key: they end now
-- (one sign-in after the upgrade), so that every session ends with its key.
UPDATE keys SET revoked = 1 WHERE kind = 'session';
