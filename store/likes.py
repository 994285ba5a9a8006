"""Likes and passes, matches, blocks and reports.

Everything that decides about a pair of people runs in one transaction that
first takes the pair's advisory lock (``pg_advisory_xact_lock`` on the
ordered pair): two people liking each other at the same instant, on two
processes, queue up on it, so the second sees the first's like and creates
the match. The unique index on active matches (``INSERT … ON CONFLICT DO
NOTHING``) backs this up: a pair never has two active matches.

Lock order, everywhere: pair lock, then match and conversation rows, then
the users' event counters (in user-id order, see ``store/events.py``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Final

import asyncpg

from store.events import Event, EventType, NewEvent, append_events_in_transaction
from store.profiles import PERSON_CARD_COLUMNS, PERSON_CARD_JOINS, PersonCard, person_card

LIKE: Final = "like"
PASS: Final = "pass"  # noqa: S105 (an action, not a password)


class LikeStatus:
    UNKNOWN_USER = "unknown_user"
    BLOCKED_BY_YOU = "blocked_by_you"
    BLOCKED_BY_THEM = "blocked_by_them"
    RECORDED = "recorded"  # a pass, or a like that is not (yet) mutual
    MATCHED = "matched"


@dataclass(frozen=True, slots=True)
class LikeOutcome:
    status: str
    match_id: str | None = None
    conversation_id: str | None = None
    created: bool = False  # this call created the match
    events: tuple[Event, ...] = ()


@dataclass(frozen=True, slots=True)
class MatchRow:
    match_id: str
    conversation_id: str
    created_at: dt.datetime
    other: PersonCard


@dataclass(frozen=True, slots=True)
class EndedMatch:
    match_id: str
    conversation_id: str | None
    events: tuple[Event, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class BlockOutcome:
    known_user: bool
    ended: EndedMatch | None = None


def ordered_pair(x: str, y: str) -> tuple[uuid.UUID, uuid.UUID]:
    a, b = sorted((uuid.UUID(x), uuid.UUID(y)))
    return a, b


async def lock_pair_in_transaction(conn: asyncpg.Connection, x: str, y: str) -> None:
    """Serialise every decision about this pair until COMMIT."""
    a, b = ordered_pair(x, y)
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"pair:{a}:{b}")


async def _live_user(conn: asyncpg.Connection, user_id: uuid.UUID) -> bool:
    found = await conn.fetchval("SELECT 1 FROM users WHERE id = $1 AND deleted_at IS NULL", user_id)
    return found is not None


async def end_active_match_in_transaction(
    conn: asyncpg.Connection, x: str, y: str, only_match_id: str | None = None
) -> EndedMatch | None:
    """End the pair's active match (if any, and if it is ``only_match_id``
    when given): close its conversation, turn both likes into passes (no
    re-match without two new likes), and log an ``unmatch`` event for both.
    The caller holds the pair lock."""
    a, b = ordered_pair(x, y)
    match_id = await conn.fetchval(
        """UPDATE matches SET ended_at = clock_timestamp()
           WHERE user_a = $1 AND user_b = $2 AND ended_at IS NULL AND ($3::uuid IS NULL OR id = $3::uuid)
           RETURNING id""",
        a,
        b,
        None if only_match_id is None else uuid.UUID(only_match_id),
    )
    if match_id is None:
        return None
    conversation_id = await conn.fetchval(
        "UPDATE conversations SET closed_at = clock_timestamp() WHERE match_id = $1 RETURNING id", match_id
    )
    await conn.execute(
        "UPDATE likes SET action = 'pass' WHERE (liker, likee) IN (($1, $2), ($2, $1)) AND action = 'like'", a, b
    )
    mid, cid = str(match_id), None if conversation_id is None else str(conversation_id)
    events = await append_events_in_transaction(
        conn,
        [
            NewEvent(str(a), EventType.UNMATCH, {"match_id": mid, "conversation_id": cid, "other_user_id": str(b)}),
            NewEvent(str(b), EventType.UNMATCH, {"match_id": mid, "conversation_id": cid, "other_user_id": str(a)}),
        ],
    )
    return EndedMatch(mid, cid, tuple(events))


class LikeStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def like(self, liker: str, likee: str, action: str) -> LikeOutcome:
        """Record a like or pass; on a mutual like, open the pair's match and
        conversation (once) and log a ``match`` event for both."""
        me, them = uuid.UUID(liker), uuid.UUID(likee)
        async with self._pool.acquire() as conn, conn.transaction():
            await lock_pair_in_transaction(conn, liker, likee)
            # Waits for an erasure of either person in flight (it holds their row), then sees it.
            live_people = await conn.fetch(
                "SELECT id FROM users WHERE id = ANY($1::uuid[]) AND deleted_at IS NULL FOR SHARE", [me, them]
            )
            if len(live_people) < 2:
                return LikeOutcome(LikeStatus.UNKNOWN_USER)
            state = await conn.fetchrow(
                """SELECT EXISTS (SELECT 1 FROM users WHERE id = $2 AND deleted_at IS NULL) AS live,
                          EXISTS (SELECT 1 FROM blocks WHERE blocker = $1 AND blocked = $2) AS blocked_by_me,
                          EXISTS (SELECT 1 FROM blocks WHERE blocker = $2 AND blocked = $1) AS blocked_by_them,
                          (SELECT action FROM likes WHERE liker = $2 AND likee = $1) AS their_action""",
                me,
                them,
            )
            if not state["live"]:
                return LikeOutcome(LikeStatus.UNKNOWN_USER)
            if state["blocked_by_them"]:
                return LikeOutcome(LikeStatus.BLOCKED_BY_THEM)
            if state["blocked_by_me"]:
                return LikeOutcome(LikeStatus.BLOCKED_BY_YOU)
            await conn.execute(
                """INSERT INTO likes AS l (liker, likee, action) VALUES ($1, $2, $3)
                   ON CONFLICT (liker, likee) DO UPDATE SET action = EXCLUDED.action,
                       created_at = CASE WHEN l.action = EXCLUDED.action THEN l.created_at ELSE now() END""",
                me,
                them,
                action,
            )
            if action != LIKE or state["their_action"] != LIKE:
                return LikeOutcome(LikeStatus.RECORDED)
            return await self._match_in_transaction(conn, liker, likee)

    @staticmethod
    async def _active_match(conn: asyncpg.Connection, a: uuid.UUID, b: uuid.UUID) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await conn.fetchrow(
            """SELECT m.id, c.id AS conversation_id FROM matches m JOIN conversations c ON c.match_id = m.id
               WHERE m.user_a = $1 AND m.user_b = $2 AND m.ended_at IS NULL""",
            a,
            b,
        )
        return row

    async def _match_in_transaction(self, conn: asyncpg.Connection, liker: str, likee: str) -> LikeOutcome:
        a, b = ordered_pair(liker, likee)
        existing = await self._active_match(conn, a, b)
        if existing is None:
            match_id = await conn.fetchval(
                """INSERT INTO matches (user_a, user_b) VALUES ($1, $2)
                   ON CONFLICT (user_a, user_b) WHERE ended_at IS NULL DO NOTHING RETURNING id""",
                a,
                b,
            )
            if match_id is not None:
                conversation_id = await conn.fetchval(
                    "INSERT INTO conversations (match_id, user_a, user_b) VALUES ($1, $2, $3) RETURNING id",
                    match_id,
                    a,
                    b,
                )
                await conn.execute(
                    """INSERT INTO conversation_members (conversation_id, user_id)
                       VALUES ($1, $2), ($1, $3)""",
                    conversation_id,
                    a,
                    b,
                )
                mid, cid = str(match_id), str(conversation_id)
                events = await append_events_in_transaction(
                    conn,
                    [
                        NewEvent(
                            str(a), EventType.MATCH, {"match_id": mid, "conversation_id": cid, "other_user_id": str(b)}
                        ),
                        NewEvent(
                            str(b), EventType.MATCH, {"match_id": mid, "conversation_id": cid, "other_user_id": str(a)}
                        ),
                    ],
                )
                return LikeOutcome(LikeStatus.MATCHED, mid, cid, created=True, events=tuple(events))
            # Another transaction created it after all (it committed, so it is visible now).
            existing = await self._active_match(conn, a, b)
            assert existing is not None
        return LikeOutcome(LikeStatus.MATCHED, str(existing["id"]), str(existing["conversation_id"]))

    async def matches_page(self, user_id: str, limit: int, after: tuple[dt.datetime, str] | None) -> list[MatchRow]:
        """The user's active matches, newest first, strictly after the keyset position ``after``."""
        after_at, after_id = (after[0], uuid.UUID(after[1])) if after else (None, None)
        rows = await self._pool.fetch(
            f"""SELECT m.id, m.created_at, c.id AS conversation_id, {PERSON_CARD_COLUMNS}
               FROM matches m
               JOIN conversations c ON c.match_id = m.id
               JOIN users o ON o.id = CASE WHEN m.user_a = $1 THEN m.user_b ELSE m.user_a END
               {PERSON_CARD_JOINS}
               WHERE (m.user_a = $1 OR m.user_b = $1) AND m.ended_at IS NULL AND o.deleted_at IS NULL
                 AND ($2::timestamptz IS NULL OR (m.created_at, m.id) < ($2, $3::uuid))
               ORDER BY m.created_at DESC, m.id DESC
               LIMIT $4""",  # noqa: S608 (constant columns and joins)
            uuid.UUID(user_id),
            after_at,
            after_id,
            limit,
        )
        return [MatchRow(str(r["id"]), str(r["conversation_id"]), r["created_at"], person_card(r)) for r in rows]

    async def unmatch(self, user_id: str, match_id: str) -> EndedMatch | None:
        """End one of the user's active matches; None if there is no such match."""
        row = await self._pool.fetchrow(
            "SELECT user_a, user_b FROM matches WHERE id = $1 AND $2 IN (user_a, user_b) AND ended_at IS NULL",
            uuid.UUID(match_id),
            uuid.UUID(user_id),
        )
        if row is None:
            return None
        x, y = str(row["user_a"]), str(row["user_b"])
        async with self._pool.acquire() as conn, conn.transaction():
            await lock_pair_in_transaction(conn, x, y)
            # None if someone ended it first (the pair may even have matched again since).
            return await end_active_match_in_transaction(conn, x, y, only_match_id=match_id)

    async def block(self, blocker: str, blocked: str) -> BlockOutcome:
        """Block someone (idempotent), ending any match with them."""
        async with self._pool.acquire() as conn, conn.transaction():
            await lock_pair_in_transaction(conn, blocker, blocked)
            if not await _live_user(conn, uuid.UUID(blocked)):
                return BlockOutcome(known_user=False)
            await conn.execute(
                "INSERT INTO blocks (blocker, blocked) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                uuid.UUID(blocker),
                uuid.UUID(blocked),
            )
            return BlockOutcome(True, await end_active_match_in_transaction(conn, blocker, blocked))

    async def unblock(self, blocker: str, blocked: str) -> bool:
        """Lift a block; False if there was none."""
        status: str = await self._pool.execute(
            "DELETE FROM blocks WHERE blocker = $1 AND blocked = $2", uuid.UUID(blocker), uuid.UUID(blocked)
        )
        return status != "DELETE 0"

    async def match_partners(self, user_id: str) -> list[str]:
        """Users with an active match with ``user_id``."""
        rows = await self._pool.fetch(
            """SELECT CASE WHEN user_a = $1 THEN user_b ELSE user_a END AS other
               FROM matches WHERE (user_a = $1 OR user_b = $1) AND ended_at IS NULL""",
            uuid.UUID(user_id),
        )
        return [str(r["other"]) for r in rows]

    async def blocked_either_way(self, a: str, b: str) -> bool:
        """Whether a block stands between the two, in either direction."""
        found = await self._pool.fetchval(
            """SELECT 1 FROM blocks WHERE (blocker = $1 AND blocked = $2) OR (blocker = $2 AND blocked = $1)""",
            uuid.UUID(a),
            uuid.UUID(b),
        )
        return found is not None

    async def report(self, reporter: str, reported: str, reason: str, details: str) -> str | None:
        """File a report; None if the reported user does not exist."""
        try:
            report_id = await self._pool.fetchval(
                """INSERT INTO reports (reporter, reported, reason, details)
                   SELECT $1, id, $3, $4 FROM users WHERE id = $2 RETURNING id""",
                uuid.UUID(reporter),
                uuid.UUID(reported),
                reason,
                details,
            )
        except asyncpg.ForeignKeyViolationError:
            return None  # the reporter's own account vanished meanwhile
        return None if report_id is None else str(report_id)
