-- Server secrets, one row per name: the key that signs playback links
-- ("links"), which rotating replaces (revoking every link made with the old one).
CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
