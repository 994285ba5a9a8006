-- Likes, matches, blocks, reports, conversations, messages, and the per-user
-- durable event log that realtime delivery and resume read from.

CREATE TABLE likes (
    liker       UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    likee       UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    action      TEXT NOT NULL CHECK (action IN ('like', 'pass')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (liker, likee),
    CHECK (liker <> likee)
);

-- The pair is stored in order (user_a < user_b). At most one active match per
-- pair: two people liking each other at the same instant on different
-- processes race into INSERT ... ON CONFLICT on this index.
CREATE TABLE matches (
    id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_a      UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_b      UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    ended_at    TIMESTAMPTZ NULL,
    CHECK (user_a < user_b)
);

CREATE UNIQUE INDEX matches_active_pair_key ON matches (user_a, user_b) WHERE ended_at IS NULL;
CREATE INDEX matches_user_a_idx ON matches (user_a, created_at DESC, id DESC) WHERE ended_at IS NULL;
CREATE INDEX matches_user_b_idx ON matches (user_b, created_at DESC, id DESC) WHERE ended_at IS NULL;

CREATE TABLE blocks (
    blocker     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blocked     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (blocker, blocked),
    CHECK (blocker <> blocked)
);

CREATE INDEX blocks_blocked_idx ON blocks (blocked, blocker);

CREATE TABLE reports (
    id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    reporter    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    reported    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    reason      TEXT NOT NULL,
    details     TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX reports_reported_idx ON reports (reported, created_at);

-- One conversation per match, opened with it and closed when it ends.
-- last_activity_at orders the inbox; last_message_id points at the newest message.
CREATE TABLE conversations (
    id                UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    match_id          UUID NOT NULL UNIQUE REFERENCES matches (id) ON DELETE CASCADE,
    user_a            UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_b            UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    closed_at         TIMESTAMPTZ NULL,
    last_message_id   BIGINT NULL,
    last_activity_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    CHECK (user_a < user_b)
);

-- Each member's read mark; also the index of "my conversations".
CREATE TABLE conversation_members (
    conversation_id       UUID NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id               UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    last_read_message_id  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
);

CREATE INDEX conversation_members_user_idx ON conversation_members (user_id);

-- A retried send (same sender, same client_id) finds its first copy.
CREATE TABLE messages (
    id               BIGSERIAL PRIMARY KEY,
    conversation_id  UUID NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    sender           UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id        TEXT NOT NULL,
    text             TEXT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (sender, client_id)
);

CREATE INDEX messages_conversation_idx ON messages (conversation_id, id DESC);

-- The per-user durable event log. event_id increases by one per user with no
-- gaps: it is taken from user_event_counters (UPDATE ... RETURNING holds the
-- row lock) in the same transaction as the change it describes, so it commits
-- or rolls back with it. A reconnecting client resumes after the last id it saw.
-- Retention: events older than EVENT_RETENTION_DAYS (store/events.py, 30 days)
-- may be pruned (DELETE ... WHERE created_at < now() - interval); the counters
-- are never pruned, so ids are never reused.
CREATE TABLE user_event_counters (
    user_id        UUID PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    last_event_id  BIGINT NOT NULL
);

CREATE TABLE user_events (
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    event_id    BIGINT NOT NULL,
    type        TEXT NOT NULL,
    payload     JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, event_id)
);

CREATE INDEX user_events_created_idx ON user_events (created_at);
