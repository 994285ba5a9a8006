-- Accounts: users and their rotating refresh tokens.

CREATE TABLE users (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    email               TEXT NOT NULL,
    password_hash       TEXT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at          TIMESTAMPTZ NULL,
    -- Access tokens issued before this instant are refused (logout everywhere).
    tokens_valid_after  TIMESTAMPTZ NULL
);

-- One live account per (normalised) email; a deleted account frees its email.
CREATE UNIQUE INDEX users_email_live_key ON users (email) WHERE deleted_at IS NULL;

-- Refresh tokens are stored only as their SHA-256. Each login starts a family;
-- every rotation adds a token to it. Presenting a used token revokes the family.
CREATE TABLE refresh_tokens (
    token_hash  BYTEA PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id   UUID NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ NULL,
    revoked_at  TIMESTAMPTZ NULL
);

CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);
