"""Erasing an account: one PostgreSQL transaction, then Redis and storage.

:meth:`ErasureStore.erase_in_one_transaction` turns the user's row into a
tombstone and removes or pseudonymises everything else of theirs in one
transaction, so the erasure is all or nothing. What cannot be in that
transaction (objects in the photo store; a last sweep of the user's Redis
keys after their sockets have closed) is written, in the same transaction,
to ``cleanup_jobs``: an outbox that :class:`CleanupJobs` works through with
backoff until every job has succeeded. Expired exports feed it as well.

Lock order (see ``store/likes.py``): the pair locks of every active match,
taken in one global order, then the user's row, then match and
conversation rows, then event counters (all in one append, in user-id
order). A like that races the erasure waits on the user's row (``FOR
SHARE`` in ``LikeStore.like``) and then sees the account gone.

What the transaction keeps (the README's "Your data" lists it for users):
the tombstone (id, erasure time, a random pseudonym), the other side of the
person's ended matches and closed conversations with the other person's own
messages, the other person's event-log entries that name the id, and
reports about or by the person with the id replaced by the pseudonym.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import asyncpg

from store.events import Event, EventType, NewEvent, append_events_in_transaction
from store.redis_client import RedisClient
from store.redis_keys import Keys, presence_shard

DELETE_OBJECT: Final = "delete_object"
PURGE_USER_KEYS: Final = "purge_user_keys"
# What a redacted event of the other person becomes: the message it carried was erased.
REDACTED_EVENT: Final = "redacted"


@dataclass(frozen=True, slots=True)
class Erased:
    """What the caller must still do after COMMIT."""

    events: tuple[Event, ...]  # unmatch events for the other people, to publish
    block_partners: tuple[str, ...]  # whose hidden sets name the user
    object_keys: tuple[str, ...]  # queued for deletion (also in cleanup_jobs)


@dataclass(frozen=True, slots=True)
class CleanupJob:
    id: int
    kind: str
    target: str
    attempts: int


def _pair_lock_key(x: str, y: str) -> str:
    a, b = sorted((uuid.UUID(x), uuid.UUID(y)))
    return f"pair:{a}:{b}"


async def enqueue_in_transaction(
    conn: asyncpg.Connection, kind: str, targets: Sequence[str], not_before: dt.datetime | None = None
) -> None:
    if targets:
        await conn.execute(
            """INSERT INTO cleanup_jobs (kind, target, not_before)
               SELECT $1, t, coalesce($3, now()) FROM unnest($2::text[]) AS t""",
            kind,
            list(targets),
            not_before,
        )


class ErasureStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def erase_in_one_transaction(self, user_id: str, keys_purge_at: dt.datetime) -> Erased | None:
        """Erase the account; None if it was erased already (or never existed)."""
        uid = uuid.UUID(user_id)
        async with self._pool.acquire() as conn, conn.transaction():
            partners = await conn.fetch(
                """SELECT CASE WHEN user_a = $1 THEN user_b ELSE user_a END AS other
                   FROM matches WHERE (user_a = $1 OR user_b = $1) AND ended_at IS NULL""",
                uid,
            )
            for lock in sorted(_pair_lock_key(user_id, str(r["other"])) for r in partners):
                await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", lock)
            pseudonym = await conn.fetchval(
                """UPDATE users SET email = NULL, password_hash = NULL, deleted_at = now(),
                                    created_at = now(), tokens_valid_after = now(),
                                    pseudonym = gen_random_uuid()
                   WHERE id = $1 AND deleted_at IS NULL RETURNING pseudonym""",
                uid,
            )
            if pseudonym is None:
                return None
            events = await self._end_matches(conn, uid)
            await self._remove_messages(conn, uid)
            block_partners = await conn.fetch(
                """DELETE FROM blocks WHERE blocker = $1 OR blocked = $1
                   RETURNING CASE WHEN blocker = $1 THEN blocked ELSE blocker END AS other""",
                uid,
            )
            await conn.execute("DELETE FROM likes WHERE liker = $1 OR likee = $1", uid)
            await conn.execute("UPDATE reports SET reported = $2 WHERE reported = $1", uid, pseudonym)
            await conn.execute("UPDATE reports SET reporter = $2 WHERE reporter = $1", uid, pseudonym)
            photo_keys = await conn.fetch("DELETE FROM photos WHERE user_id = $1 RETURNING object_key, thumb_key", uid)
            export_keys = await conn.fetch(
                "DELETE FROM data_exports WHERE user_id = $1 AND object_key IS NOT NULL RETURNING object_key", uid
            )
            await conn.execute("DELETE FROM data_exports WHERE user_id = $1", uid)
            await conn.execute("DELETE FROM profiles WHERE user_id = $1", uid)
            await conn.execute("DELETE FROM refresh_tokens WHERE user_id = $1", uid)
            await conn.execute("DELETE FROM user_events WHERE user_id = $1", uid)
            await conn.execute("DELETE FROM user_event_counters WHERE user_id = $1", uid)
            # Compatibility: the assessment result, crossed paths and the
            # suggestion lists the person is in or owns (the tombstone keeps
            # the users row, so ON DELETE CASCADE does not fire).
            await conn.execute("DELETE FROM attachment_assessments WHERE user_id = $1", uid)
            await conn.execute("DELETE FROM crossed_paths WHERE user_lo = $1 OR user_hi = $1", uid)
            await conn.execute("DELETE FROM suggestions WHERE user_id = $1 OR candidate_id = $1", uid)
            await conn.execute("DELETE FROM suggestion_days WHERE user_id = $1", uid)
            object_keys = [k for r in photo_keys for k in (r["object_key"], r["thumb_key"])]
            object_keys += [r["object_key"] for r in export_keys]
            await enqueue_in_transaction(conn, DELETE_OBJECT, object_keys)
            await enqueue_in_transaction(conn, PURGE_USER_KEYS, [user_id], keys_purge_at)
        others = tuple(e for e in events if e.user_id != user_id)
        return Erased(others, tuple(str(r["other"]) for r in block_partners), tuple(object_keys))

    @staticmethod
    async def _end_matches(conn: asyncpg.Connection, uid: uuid.UUID) -> list[Event]:
        """End every active match and close its conversation; the other person
        gets an ``unmatch`` event (one append: counters in user-id order)."""
        ended = await conn.fetch(
            """UPDATE matches SET ended_at = clock_timestamp()
               WHERE (user_a = $1 OR user_b = $1) AND ended_at IS NULL
               RETURNING id, CASE WHEN user_a = $1 THEN user_b ELSE user_a END AS other""",
            uid,
        )
        if not ended:
            return []
        closed = await conn.fetch(
            """UPDATE conversations SET closed_at = coalesce(closed_at, clock_timestamp())
               WHERE match_id = ANY($1::uuid[]) RETURNING id, match_id""",
            [r["id"] for r in ended],
        )
        conversation_of = {r["match_id"]: str(r["id"]) for r in closed}
        return await append_events_in_transaction(
            conn,
            [
                NewEvent(
                    str(r["other"]),
                    EventType.UNMATCH,
                    {
                        "match_id": str(r["id"]),
                        "conversation_id": conversation_of.get(r["id"]),
                        "other_user_id": str(uid),
                    },
                )
                for r in ended
            ],
        )

    @staticmethod
    async def _remove_messages(conn: asyncpg.Connection, uid: uuid.UUID) -> None:
        """Delete the person's messages and their membership rows; the other
        person's copies of those messages in their event log are redacted."""
        await conn.execute(
            """UPDATE user_events SET type = $2,
                      payload = jsonb_build_object('conversation_id', payload->'conversation_id')
               WHERE type = 'message' AND payload->'message'->>'sender_id' = $3
                 AND user_id IN (SELECT user_id FROM conversation_members WHERE conversation_id IN
                                 (SELECT conversation_id FROM conversation_members WHERE user_id = $1))""",
            uid,
            REDACTED_EVENT,
            str(uid),
        )
        conversations = await conn.fetch(
            "DELETE FROM conversation_members WHERE user_id = $1 RETURNING conversation_id", uid
        )
        await conn.execute("DELETE FROM messages WHERE sender = $1", uid)
        await conn.execute(
            """UPDATE conversations c SET last_message_id =
                      (SELECT max(id) FROM messages m WHERE m.conversation_id = c.id)
               WHERE c.id = ANY($1::uuid[])""",
            [r["conversation_id"] for r in conversations],
        )


class UserKeys:
    """The Redis side of an erasure: every key that names the user, and the
    user's entries in shared sets. Idempotent, so it runs right after COMMIT
    and once more later (``purge_user_keys``), after the user's sockets have
    closed and released their presence."""

    def __init__(self, client: RedisClient, keys: Keys) -> None:
        self._client = client
        self._keys = keys

    async def purge(self, user_id: str, *, block_partners: Sequence[str] = (), extra_keys: Sequence[str] = ()) -> None:
        k = self._keys
        tokens = [
            t.decode() if isinstance(t, bytes) else str(t)
            for t in await self._client.smembers(k.user_sessions(user_id))
        ]
        owners = []
        if tokens:
            async with self._client.pipeline(transaction=False) as pipe:
                for token in tokens:
                    pipe.hget(k.session(token), "user_id")
                owners = await pipe.execute()
        async with self._client.pipeline(transaction=False) as pipe:
            for token, owner in zip(tokens, owners, strict=True):
                if owner is not None and (owner.decode() if isinstance(owner, bytes) else str(owner)) == user_id:
                    pipe.delete(k.session(token))
                    pipe.zrem(k.active_sessions, token)
            for partner in block_partners:
                pipe.srem(k.hidden(partner), user_id)
            pipe.zrem(k.presence_deadlines(presence_shard(user_id)), user_id)
            for key in (
                k.user_sessions(user_id),
                k.tokens_valid_after(user_id),
                k.presence(user_id),
                k.hidden(user_id),
                *extra_keys,
            ):
                pipe.delete(key)
            await pipe.execute()


class CleanupJobs:
    """The outbox of work that follows an erasure or an export's expiry."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def claim_due(self, limit: int, lease_seconds: float, horizon_seconds: float = 0.0) -> list[CleanupJob]:
        """Take jobs due within ``horizon_seconds`` for ``lease_seconds`` (another
        process skips them meanwhile)."""
        rows = await self._pool.fetch(
            """UPDATE cleanup_jobs SET not_before = now() + make_interval(secs => $2)
               WHERE id IN (SELECT id FROM cleanup_jobs WHERE not_before <= now() + make_interval(secs => $3)
                            ORDER BY not_before, id LIMIT $1 FOR UPDATE SKIP LOCKED)
               RETURNING id, kind, target, attempts""",
            limit,
            lease_seconds,
            horizon_seconds,
        )
        return [CleanupJob(r["id"], r["kind"], r["target"], r["attempts"]) for r in rows]

    async def done(self, job_id: int) -> None:
        await self._pool.execute("DELETE FROM cleanup_jobs WHERE id = $1", job_id)

    async def failed(self, job_id: int, retry_in_seconds: float, error: str) -> None:
        await self._pool.execute(
            """UPDATE cleanup_jobs SET attempts = attempts + 1, last_error = $3,
                      not_before = now() + make_interval(secs => $2)
               WHERE id = $1""",
            job_id,
            retry_in_seconds,
            error,
        )

    async def pending(self) -> int:
        return int(await self._pool.fetchval("SELECT count(*) FROM cleanup_jobs"))

    async def expire_exports(self) -> int:
        """Drop exports past their expiry, queueing their files for deletion."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch("DELETE FROM data_exports WHERE expires_at <= now() RETURNING object_key")
            await enqueue_in_transaction(conn, DELETE_OBJECT, [r["object_key"] for r in rows if r["object_key"]])
        return len(rows)
