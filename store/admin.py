"""Admin console storage: the audit trail, the moderation queue, bans, and
the durable time series behind ``GET /stats/history``.

Every admin action is written to ``admin_audit`` in the same transaction as
the change it records; the table refuses UPDATE, DELETE and TRUNCATE (a
trigger, migration 0008). The series are counts per hour or per day, read
from the flushed counters (``hourly_stats``, ``daily_stats``,
``interest_category_counts``, ``daily_active_users``) or counted from the
durable rows' ``created_at``: never a user id.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Final

import asyncpg

from protocol import bus
from store.accounts import VALID_AFTER_CACHE_SECONDS
from store.profiles import PERSON_CARD_COLUMNS, PERSON_CARD_JOINS, PersonCard, person_card
from store.pubsub import Publisher
from store.redis_client import RedisClient
from store.redis_keys import Keys

TOKEN_ACTOR: Final = "admin-token"  # noqa: S105 (an actor name)
REPORT_MESSAGES_LIMIT: Final = 500

# Series counted from durable rows: metric -> (table, time column, extra condition).
ROW_COUNT_SERIES: Final[dict[str, tuple[str, str, str]]] = {
    "signups": ("users", "created_at", "TRUE"),
    "profiles_created": ("profiles", "created_at", "TRUE"),
    "likes": ("likes", "created_at", "action = 'like'"),
    "mutual_matches": ("matches", "created_at", "TRUE"),
    "messages_sent": ("messages", "created_at", "TRUE"),
}
# Series from the flushed proximity counters: metric -> (daily table column, hourly metric).
COUNTER_SERIES: Final[dict[str, tuple[str, str]]] = {
    "sessions": ("total_sessions", "sessions"),
    "matches": ("total_matches", "matches"),
}
CATEGORY_PREFIX: Final = "c:"
GRANULARITIES: Final = ("day", "hour")
# Rows of a per-day table whose date falls in [$1, $2) (timestamptz, read in UTC).
DAY_RANGE: Final = (
    "date >= ($1::timestamptz AT TIME ZONE 'UTC')::date AND date < ($2::timestamptz AT TIME ZONE 'UTC')::date"
)
# The control event that closes a banned user's sockets (realtime/hub.py decodes it).
SESSION_SCAN_BATCH: Final = 500


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: dt.datetime
    actor: str
    action: str
    target_user: str | None
    report_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class ReportRow:
    id: str
    reporter: str
    reason: str
    details: str
    created_at: dt.datetime
    resolved_at: dt.datetime | None
    resolution: str | None
    resolution_note: str | None
    reported: PersonCard
    reported_banned: bool
    reports_against: int


@dataclass(frozen=True, slots=True)
class ReportMessage:
    id: int
    sender: str
    text: str
    created_at: dt.datetime


def _uuid_or_none(value: object) -> str | None:
    return None if value is None else str(value)


async def _audit(
    conn: asyncpg.Connection, actor: str, action: str, target_user: str | None, report_id: str | None, reason: str
) -> None:
    await conn.execute(
        "INSERT INTO admin_audit (actor, action, target_user, report_id, reason) VALUES ($1, $2, $3, $4, $5)",
        actor,
        action,
        None if target_user is None else uuid.UUID(target_user),
        None if report_id is None else uuid.UUID(report_id),
        reason,
    )


class AdminStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # -- audit -------------------------------------------------------------

    async def record(self, actor: str, action: str, target_user: str | None, reason: str) -> None:
        async with self._pool.acquire() as conn:
            await _audit(conn, actor, action, target_user, None, reason)

    async def audit_page(self, before_id: int | None, limit: int) -> list[AuditEntry]:
        """Newest first; ``limit + 1`` rows so the caller can tell whether more follow."""
        rows = await self._pool.fetch(
            """SELECT id, at, actor, action, target_user, report_id, reason FROM admin_audit
               WHERE $1::bigint IS NULL OR id < $1 ORDER BY id DESC LIMIT $2""",
            before_id,
            limit + 1,
        )
        return [
            AuditEntry(
                r["id"],
                r["at"],
                r["actor"],
                r["action"],
                _uuid_or_none(r["target_user"]),
                _uuid_or_none(r["report_id"]),
                r["reason"],
            )
            for r in rows
        ]

    # -- bans --------------------------------------------------------------

    async def set_banned(
        self, actor: str, user_id: str, banned: bool, reason: str, report_id: str | None = None
    ) -> bool:
        """Ban (or lift the ban on) a live user and audit it; False if no such user.
        A ban also revokes every refresh token and moves ``tokens_valid_after``."""
        uid = uuid.UUID(user_id)
        async with self._pool.acquire() as conn, conn.transaction():
            if banned:
                found = await conn.fetchval(
                    """UPDATE users SET banned_at = COALESCE(banned_at, clock_timestamp()), ban_reason = $2,
                                        tokens_valid_after = clock_timestamp()
                       WHERE id = $1 AND deleted_at IS NULL RETURNING id""",
                    uid,
                    reason,
                )
                if found is not None:
                    await conn.execute(
                        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL", uid
                    )
            else:
                found = await conn.fetchval(
                    """UPDATE users SET banned_at = NULL, ban_reason = NULL
                       WHERE id = $1 AND deleted_at IS NULL RETURNING id""",
                    uid,
                )
            if found is None:
                return False
            await _audit(conn, actor, "ban" if banned else "unban", user_id, report_id, reason)
            return True

    async def tokens_valid_after_ms(self, user_id: str) -> int | None:
        value = await self._pool.fetchval("SELECT tokens_valid_after FROM users WHERE id = $1", uuid.UUID(user_id))
        return None if value is None else int(value.timestamp() * 1000)

    # -- moderation queue --------------------------------------------------

    async def reports_page(self, resolved: bool, after: tuple[dt.datetime, str] | None, limit: int) -> list[ReportRow]:
        """Oldest first, keyset on (created_at, id); ``limit + 1`` rows."""
        rows = await self._pool.fetch(
            f"""SELECT r.id, r.reporter, r.reason, r.details, r.created_at, r.resolved_at, r.resolution,
                       r.resolution_note, o.banned_at IS NOT NULL AS banned,
                       (SELECT count(*) FROM reports x WHERE x.reported = r.reported) AS reports_against,
                       {PERSON_CARD_COLUMNS}
                FROM reports r
                JOIN users o ON o.id = r.reported
                {PERSON_CARD_JOINS}
                WHERE (r.resolved_at IS NOT NULL) = $1
                  AND ($2::timestamptz IS NULL OR (r.created_at, r.id) > ($2, $3::uuid))
                ORDER BY r.created_at, r.id
                LIMIT $4""",  # noqa: S608 (constant columns)
            resolved,
            None if after is None else after[0],
            None if after is None else uuid.UUID(after[1]),
            limit + 1,
        )
        return [
            ReportRow(
                id=str(r["id"]),
                reporter=str(r["reporter"]),
                reason=r["reason"],
                details=r["details"],
                created_at=r["created_at"],
                resolved_at=r["resolved_at"],
                resolution=r["resolution"],
                resolution_note=r["resolution_note"],
                reported=person_card(r),
                reported_banned=bool(r["banned"]),
                reports_against=int(r["reports_against"]),
            )
            for r in rows
        ]

    async def conversation_between(self, a: str, b: str) -> list[ReportMessage]:
        """The messages of the conversations between two people (and no others), oldest first."""
        low, high = sorted((uuid.UUID(a), uuid.UUID(b)))
        rows = await self._pool.fetch(
            """SELECT m.id, m.sender, m.text, m.created_at FROM (
                   SELECT m.id, m.sender, m.text, m.created_at
                   FROM conversations c JOIN messages m ON m.conversation_id = c.id
                   WHERE c.user_a = $1 AND c.user_b = $2
                   ORDER BY m.id DESC LIMIT $3
               ) m ORDER BY m.id""",
            low,
            high,
            REPORT_MESSAGES_LIMIT,
        )
        return [ReportMessage(r["id"], str(r["sender"]), r["text"], r["created_at"]) for r in rows]

    async def report_parties(self, report_id: str) -> tuple[str, bool] | None:
        """(reported user, already resolved) of a report, or None."""
        row = await self._pool.fetchrow(
            "SELECT reported, resolved_at IS NOT NULL AS resolved FROM reports WHERE id = $1", uuid.UUID(report_id)
        )
        return None if row is None else (str(row["reported"]), bool(row["resolved"]))

    async def resolve_report(self, actor: str, report_id: str, action: str, note: str) -> str | None:
        """Close an open report with its action and audit it; returns the
        reported user's id, or None if the report is unknown or resolved already."""
        async with self._pool.acquire() as conn, conn.transaction():
            reported = await conn.fetchval(
                """UPDATE reports SET resolved_at = clock_timestamp(), resolution = $2, resolution_note = $3
                   WHERE id = $1 AND resolved_at IS NULL RETURNING reported""",
                uuid.UUID(report_id),
                action,
                note,
            )
            if reported is None:
                return None
            await _audit(conn, actor, f"report_{action}", str(reported), report_id, note)
            return str(reported)

    # -- time series ---------------------------------------------------------

    async def series(
        self, metric: str, granularity: str, start: dt.datetime, end: dt.datetime
    ) -> dict[dt.datetime, int]:
        """Counts per bucket (UTC, naive-free) with ``start <= bucket < end``; absent buckets are 0."""
        assert granularity in GRANULARITIES
        if metric in ROW_COUNT_SERIES:
            table, column, condition = ROW_COUNT_SERIES[metric]
            sql = f"""SELECT date_trunc('{granularity}', {column} AT TIME ZONE 'UTC') AS bucket, count(*) AS n
                      FROM {table} WHERE {column} >= $1 AND {column} < $2 AND {condition}
                      GROUP BY 1"""  # noqa: S608 (identifiers are constants)
        elif granularity == "hour":
            name = COUNTER_SERIES[metric][1] if metric in COUNTER_SERIES else metric
            return await self._fetch_series(
                """SELECT hour AT TIME ZONE 'UTC' AS bucket, count AS n FROM hourly_stats
                   WHERE metric = $3 AND hour >= $1 AND hour < $2""",
                start,
                end,
                name,
            )
        elif metric in COUNTER_SERIES:
            column = COUNTER_SERIES[metric][0]
            sql = f"""SELECT date::timestamp AS bucket, {column} AS n FROM daily_stats
                      WHERE {DAY_RANGE}"""  # noqa: S608
        elif metric == "daily_active_users":
            sql = f"""SELECT date::timestamp AS bucket, count AS n FROM daily_active_users
                     WHERE {DAY_RANGE}"""  # noqa: S608 (constant clause)
        elif metric.startswith(CATEGORY_PREFIX):
            return await self._fetch_series(
                f"""SELECT date::timestamp AS bucket, count AS n FROM interest_category_counts
                   WHERE category = $3 AND {DAY_RANGE}""",  # noqa: S608 (constant clause)
                start,
                end,
                metric.removeprefix(CATEGORY_PREFIX),
            )
        else:
            raise ValueError(metric)
        return await self._fetch_series(sql, start, end)

    async def _fetch_series(
        self, sql: str, start: dt.datetime, end: dt.datetime, *extra: object
    ) -> dict[dt.datetime, int]:
        rows = await self._pool.fetch(sql, start, end, *extra)
        return {r["bucket"].replace(tzinfo=dt.UTC): int(r["n"]) for r in rows}

    async def categories_seen(self, start: dt.datetime, end: dt.datetime) -> list[str]:
        rows = await self._pool.fetch(
            f"""SELECT DISTINCT category FROM interest_category_counts
               WHERE {DAY_RANGE}
               ORDER BY category""",  # noqa: S608 (constant clause)
            start,
            end,
        )
        return [r["category"] for r in rows]


class BanSignals:
    """The Redis side of a ban: the cached token cut-off (so every process
    refuses the old tokens at once), the "ban" control event on the user's
    channel (their sockets close with 4403 wherever they are), and the end
    of the user's proximity sessions."""

    def __init__(self, client: RedisClient, keys: Keys, publisher: Publisher) -> None:
        self._client = client
        self._keys = keys
        self._publisher = publisher

    async def announce(self, user_id: str, valid_after_ms: int) -> None:
        await self._client.set(
            self._keys.tokens_valid_after(user_id), str(valid_after_ms), ex=VALID_AFTER_CACHE_SECONDS
        )
        await self._publisher.publish(self._keys.user_channel(user_id), bus.ban(valid_after_ms))

    async def end_sessions(self, user_id: str) -> int:
        """Delete the live proximity sessions opened by the user (a scan of the
        live-session index: bans are rare, sessions are few thousand)."""
        tokens = [
            t.decode() if isinstance(t, bytes) else str(t)
            for t in await self._client.zrange(self._keys.active_sessions, 0, -1)
        ]
        ended = 0
        for start in range(0, len(tokens), SESSION_SCAN_BATCH):
            batch = tokens[start : start + SESSION_SCAN_BATCH]
            async with self._client.pipeline(transaction=False) as pipe:
                for token in batch:
                    pipe.hget(self._keys.session(token), "user_id")
                owners = await pipe.execute()
            for token, owner in zip(batch, owners, strict=True):
                owner_id = owner.decode() if isinstance(owner, bytes) else owner
                if owner_id == user_id:
                    await self._client.delete(self._keys.session(token))
                    await self._client.zrem(self._keys.active_sessions, token)
                    ended += 1
        return ended
