-- Data rights: erasure (a tombstone instead of the account), pseudonymised
-- reports, the outbox of storage clean-ups that must follow an erasure, and
-- export jobs. Additive: older code never reads an erased account's email or
-- password hash (it filters on deleted_at), and nothing it writes breaks.

-- An erased account keeps only its row as a tombstone (the id is never
-- reused): no email, no password hash. Reports about (or by) the person
-- name them by this pseudonym instead of their id.
ALTER TABLE users ALTER COLUMN email DROP NOT NULL;
ALTER TABLE users ALTER COLUMN password_hash DROP NOT NULL;
ALTER TABLE users ADD COLUMN pseudonym UUID NULL;

-- Reports outlive an erasure (for safety), naming the erased side by its
-- pseudonym, which is no user id: the foreign keys go. New reports still
-- name live users (store/likes.py checks it in the INSERT).
ALTER TABLE reports DROP CONSTRAINT IF EXISTS reports_reporter_fkey;
ALTER TABLE reports DROP CONSTRAINT IF EXISTS reports_reported_fkey;

-- Work that must follow a committed erasure or an expired export, retried
-- with backoff until it succeeds (store/erasure.py): deleting stored
-- objects, and a last sweep of a user's Redis keys once their sockets are
-- closed. Rows are deleted when done.
CREATE TABLE cleanup_jobs (
    id          BIGSERIAL PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('delete_object', 'purge_user_keys')),
    target      TEXT NOT NULL,
    not_before  TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT NULL
);

CREATE INDEX cleanup_jobs_due_idx ON cleanup_jobs (not_before);

-- Export jobs (store/export.py). The file is an object in the photo store
-- under a key that names only the export, deleted when it expires.
CREATE TABLE data_exports (
    id           UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status       TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'ready', 'failed')),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at  TIMESTAMPTZ NULL,
    expires_at   TIMESTAMPTZ NULL,
    object_key   TEXT NULL,
    size_bytes   BIGINT NULL
);

CREATE INDEX data_exports_user_idx ON data_exports (user_id, created_at DESC);
CREATE INDEX data_exports_expiry_idx ON data_exports (expires_at) WHERE expires_at IS NOT NULL;
