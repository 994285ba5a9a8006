-- Aggregate proximity statistics. Aggregates only: no user-level rows and no
-- raw interests ever reach PostgreSQL.

CREATE TABLE daily_stats (
    date            DATE PRIMARY KEY,
    total_sessions  BIGINT NOT NULL DEFAULT 0,
    total_matches   BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE interest_category_counts (
    date      DATE NOT NULL,
    category  TEXT NOT NULL,
    count     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (date, category)
);

-- One row per counter batch moved from Redis, so a batch retried after a
-- crash between COMMIT and the Redis clean-up is never counted twice.
CREATE TABLE stats_flush_batches (
    batch_id    TEXT PRIMARY KEY,
    flushed_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
