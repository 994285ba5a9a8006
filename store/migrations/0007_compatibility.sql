-- Compatibility: the attachment assessment, values and preferences on the
-- profile, crossed paths between two signed-in people, and the daily
-- suggestion lists (with the fence of the job that precomputes them).

CREATE TABLE attachment_assessments (
    user_id     UUID PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    -- {item_id: 1..7}, as answered (reverse-scoring happens when scoring).
    answers     JSONB NOT NULL,
    anxiety     REAL NOT NULL CHECK (anxiety BETWEEN 1 AND 7),
    avoidance   REAL NOT NULL CHECK (avoidance BETWEEN 1 AND 7),
    style       TEXT NOT NULL CHECK (style IN ('secure', 'anxious', 'avoidant', 'fearful_avoidant')),
    taken_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

-- Values (fixed choices, NULL = not answered) and preferences.
ALTER TABLE profiles
    ADD COLUMN family_plans      TEXT NULL,
    ADD COLUMN smoking           TEXT NULL,
    ADD COLUMN drinking          TEXT NULL,
    ADD COLUMN faith_importance  TEXT NULL,
    ADD COLUMN age_min           SMALLINT NULL CHECK (age_min BETWEEN 18 AND 120),
    ADD COLUMN age_max           SMALLINT NULL CHECK (age_max BETWEEN 18 AND 120),
    ADD COLUMN max_distance_km   REAL NULL CHECK (max_distance_km > 0),
    ADD COLUMN time_zone         TEXT NOT NULL DEFAULT 'UTC',
    ADD COLUMN crossed_paths     BOOLEAN NOT NULL DEFAULT true;

-- Two signed-in people nudged near each other: the pair in order, how often,
-- and when last. No place, no token. Rows older than 14 days are pruned.
CREATE TABLE crossed_paths (
    user_lo   UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_hi   UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    count     INTEGER NOT NULL CHECK (count > 0),
    last_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_lo, user_hi),
    CHECK (user_lo < user_hi)
);
CREATE INDEX crossed_paths_hi_idx ON crossed_paths (user_hi, user_lo);
CREATE INDEX crossed_paths_last_idx ON crossed_paths (last_at);

-- A block erases the pair's crossed paths, whoever blocked whom.
CREATE FUNCTION crossed_paths_forget_blocked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM crossed_paths
    WHERE user_lo = LEAST(NEW.blocker, NEW.blocked) AND user_hi = GREATEST(NEW.blocker, NEW.blocked);
    RETURN NEW;
END $$;
CREATE TRIGGER blocks_forget_crossed_paths AFTER INSERT ON blocks
    FOR EACH ROW EXECUTE FUNCTION crossed_paths_forget_blocked();

-- One list per person per local date; each row one card, best first.
-- shown_at is the UTC instant the list was made (exposure is counted per UTC day).
CREATE TABLE suggestions (
    user_id       UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    local_date    DATE NOT NULL,
    position      SMALLINT NOT NULL,
    candidate_id  UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    score         SMALLINT NOT NULL CHECK (score BETWEEN 0 AND 100),
    reasons       TEXT[] NOT NULL,
    shown_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, local_date, position)
);
-- "Shown to me in the last 7 days" and "lists a person is in today".
CREATE INDEX suggestions_user_candidate_idx ON suggestions (user_id, candidate_id, shown_at);
CREATE INDEX suggestions_exposure_idx ON suggestions (candidate_id, shown_at);
-- An empty list is a list too (the day is done): one marker row per list.
CREATE TABLE suggestion_days (
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    local_date  DATE NOT NULL,
    made_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, local_date)
);

-- Fencing tokens of background jobs: a write carrying a token lower than the
-- highest one seen comes from a holder whose lock expired, and is refused.
CREATE TABLE job_fences (
    name   TEXT PRIMARY KEY,
    token  BIGINT NOT NULL
);

-- Activity ("active in the last 7 days"): refresh token rotations.
CREATE INDEX refresh_tokens_user_created_idx ON refresh_tokens (user_id, created_at DESC);
