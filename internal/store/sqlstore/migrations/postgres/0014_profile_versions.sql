-- Every version of every profile the server has loaded: a job names the
-- version it was submitted with, and runs that one even after an edit.
-- digest identifies what the body makes (not its number), so reloading an
-- unchanged profile adds nothing.
CREATE TABLE profile_versions (
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    digest     TEXT NOT NULL,
    body       TEXT NOT NULL,  -- the profile as JSON
    created_at BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);
