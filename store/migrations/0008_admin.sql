-- Admin console: bans, report resolution, the append-only audit trail, and
-- the durable time series behind GET /stats/history. Aggregates only: the
-- series tables hold counts per hour (or per day), never a user id.

ALTER TABLE users ADD COLUMN banned_at TIMESTAMPTZ NULL;
ALTER TABLE users ADD COLUMN ban_reason TEXT NULL;

ALTER TABLE reports ADD COLUMN resolved_at TIMESTAMPTZ NULL;
ALTER TABLE reports ADD COLUMN resolution TEXT NULL CHECK (resolution IN ('dismiss', 'warn', 'ban'));
ALTER TABLE reports ADD COLUMN resolution_note TEXT NULL;

-- The moderation queue walks open (or resolved) reports oldest first.
CREATE INDEX reports_queue_idx ON reports ((resolved_at IS NULL), created_at, id);

-- Every admin action, written in the same transaction as the action itself.
-- No foreign keys: an entry outlives the account it names.
CREATE TABLE admin_audit (
    id           BIGSERIAL PRIMARY KEY,
    at           TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    actor        TEXT NOT NULL,        -- an admin's user id, or 'admin-token'
    action       TEXT NOT NULL,
    target_user  UUID NULL,
    report_id    UUID NULL,
    reason       TEXT NOT NULL DEFAULT ''
);

CREATE FUNCTION admin_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'admin_audit is append-only' USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER admin_audit_no_update_delete BEFORE UPDATE OR DELETE ON admin_audit
    FOR EACH ROW EXECUTE FUNCTION admin_audit_append_only();
CREATE TRIGGER admin_audit_no_truncate BEFORE TRUNCATE ON admin_audit
    FOR EACH STATEMENT EXECUTE FUNCTION admin_audit_append_only();

-- Hourly counters flushed from Redis (proximity sessions, proximity matches,
-- per-category sessions: metric 'c:<category>').
CREATE TABLE hourly_stats (
    hour    TIMESTAMPTZ NOT NULL,
    metric  TEXT NOT NULL,
    count   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (metric, hour)
);

-- Distinct active users per day: the count of the day's HyperLogLog, kept
-- at its highest value seen (the Redis sketch only grows during its day).
CREATE TABLE daily_active_users (
    date   DATE PRIMARY KEY,
    count  BIGINT NOT NULL DEFAULT 0
);
