"""Data export jobs and the reads that fill an export, page by page.

Jobs are rows of ``data_exports`` (migration 0006). The file is an object in
the photo store under ``exports/{export_id}.zip`` (a key naming only the
export); expired rows are deleted by ``CleanupJobs.expire_exports``, which
queues the object's deletion.

Every read that can grow with the account (messages) is a keyset page, so
memory does not grow with the size of an export.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from store.erasure import DELETE_OBJECT, enqueue_in_transaction

PENDING: Final = "pending"
RUNNING: Final = "running"
READY: Final = "ready"
FAILED: Final = "failed"


def export_object_key(export_id: str) -> str:
    return f"exports/{export_id}.zip"


@dataclass(frozen=True, slots=True)
class ExportJob:
    id: str
    user_id: str
    status: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    object_key: str | None
    size_bytes: int | None


@dataclass(frozen=True, slots=True)
class Started:
    job: ExportJob | None
    retry_after_seconds: int = 0  # > 0: the last export is too recent


_JOB_COLUMNS: Final = "id, user_id, status, created_at, expires_at, object_key, size_bytes"


def _job(row: asyncpg.Record) -> ExportJob:
    return ExportJob(
        str(row["id"]),
        str(row["user_id"]),
        row["status"],
        row["created_at"],
        row["expires_at"],
        row["object_key"],
        row["size_bytes"],
    )


def _records(rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    return [dict(r) for r in rows]


class ExportStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # -- jobs ------------------------------------------------------------------

    async def start(self, user_id: str, min_interval: dt.timedelta, ttl: dt.timedelta) -> Started:
        """A new pending job, unless the user started one (that did not fail)
        less than ``min_interval`` ago. The user's row lock makes two
        concurrent starts agree. A job expires ``ttl`` after it starts unless
        it finishes (which sets its own expiry), so one whose process died
        does not stay forever."""
        uid = uuid.UUID(user_id)
        async with self._pool.acquire() as conn, conn.transaction():
            live = await conn.fetchval("SELECT id FROM users WHERE id = $1 AND deleted_at IS NULL FOR UPDATE", uid)
            if live is None:
                return Started(None)
            wait = await conn.fetchval(
                """SELECT extract(epoch FROM max(created_at) + $2::interval - now())
                   FROM data_exports WHERE user_id = $1 AND status <> 'failed'""",
                uid,
                min_interval,
            )
            if wait is not None and wait > 0:
                return Started(None, max(1, int(wait) + 1))
            row = await conn.fetchrow(
                f"""INSERT INTO data_exports (user_id, expires_at) VALUES ($1, now() + $2::interval)
                    RETURNING {_JOB_COLUMNS}""",  # noqa: S608
                uid,
                ttl,
            )
        return Started(_job(row))

    async def job(self, user_id: str, export_id: str) -> ExportJob | None:
        """The user's own job (None for anyone else's)."""
        row = await self._pool.fetchrow(
            f"SELECT {_JOB_COLUMNS} FROM data_exports WHERE id = $1 AND user_id = $2",  # noqa: S608
            uuid.UUID(export_id),
            uuid.UUID(user_id),
        )
        return None if row is None else _job(row)

    async def set_running(self, export_id: str) -> bool:
        status = await self._pool.execute(
            "UPDATE data_exports SET status = 'running' WHERE id = $1 AND status = 'pending'", uuid.UUID(export_id)
        )
        return bool(status != "UPDATE 0")

    async def set_ready(self, export_id: str, object_key: str, size_bytes: int, expires_at: dt.datetime) -> bool:
        """Record the finished file; False (and its object queued for deletion)
        if the job vanished meanwhile (the account was erased)."""
        async with self._pool.acquire() as conn, conn.transaction():
            found = await conn.fetchval(
                """UPDATE data_exports SET status = 'ready', finished_at = now(), expires_at = $4,
                          object_key = $2, size_bytes = $3
                   WHERE id = $1 RETURNING id""",
                uuid.UUID(export_id),
                object_key,
                size_bytes,
                expires_at,
            )
            if found is None:
                await enqueue_in_transaction(conn, DELETE_OBJECT, [object_key])
        return found is not None

    async def set_failed(self, export_id: str, expires_at: dt.datetime) -> None:
        await self._pool.execute(
            "UPDATE data_exports SET status = 'failed', finished_at = now(), expires_at = $2 WHERE id = $1",
            uuid.UUID(export_id),
            expires_at,
        )

    # -- what goes in the file ---------------------------------------------------

    async def account(self, user_id: str) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(
            "SELECT id, email, created_at FROM users WHERE id = $1 AND deleted_at IS NULL", uuid.UUID(user_id)
        )
        return None if row is None else dict(row)

    async def profile(self, user_id: str) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(
            """SELECT display_name, birthdate, gender, interested_in, bio, interests, lat, lon,
                      created_at, updated_at
               FROM profiles WHERE user_id = $1""",
            uuid.UUID(user_id),
        )
        return None if row is None else dict(row)

    async def photos(self, user_id: str) -> list[dict[str, Any]]:
        return _records(
            await self._pool.fetch(
                """SELECT id, position, content_type, width, height, size_bytes, object_key, created_at
                   FROM photos WHERE user_id = $1 ORDER BY position""",
                uuid.UUID(user_id),
            )
        )

    async def likes(self, user_id: str) -> list[dict[str, Any]]:
        return _records(
            await self._pool.fetch(
                "SELECT likee AS other, action, created_at FROM likes WHERE liker = $1 ORDER BY created_at",
                uuid.UUID(user_id),
            )
        )

    async def blocks(self, user_id: str) -> list[dict[str, Any]]:
        return _records(
            await self._pool.fetch(
                "SELECT blocked AS other, created_at FROM blocks WHERE blocker = $1 ORDER BY created_at",
                uuid.UUID(user_id),
            )
        )

    async def matches(self, user_id: str) -> list[dict[str, Any]]:
        return _records(
            await self._pool.fetch(
                """SELECT m.id, CASE WHEN m.user_a = $1 THEN m.user_b ELSE m.user_a END AS other,
                          m.created_at, m.ended_at, c.id AS conversation_id
                   FROM matches m LEFT JOIN conversations c ON c.match_id = m.id
                   WHERE m.user_a = $1 OR m.user_b = $1 ORDER BY m.created_at""",
                uuid.UUID(user_id),
            )
        )

    async def conversations(self, user_id: str) -> list[dict[str, Any]]:
        return _records(
            await self._pool.fetch(
                """SELECT c.id, c.match_id, CASE WHEN c.user_a = $1 THEN c.user_b ELSE c.user_a END AS other,
                          c.created_at, c.closed_at, me.last_read_message_id
                   FROM conversation_members me JOIN conversations c ON c.id = me.conversation_id
                   WHERE me.user_id = $1 ORDER BY c.created_at""",
                uuid.UUID(user_id),
            )
        )

    async def messages_page(self, conversation_id: str, after_id: int, limit: int) -> list[dict[str, Any]]:
        """Both sides' messages of one conversation, oldest first, after ``after_id`` (a keyset page)."""
        return _records(
            await self._pool.fetch(
                """SELECT id, sender, client_id, text, created_at FROM messages
                   WHERE conversation_id = $1 AND id > $2 ORDER BY id LIMIT $3""",
                uuid.UUID(conversation_id),
                after_id,
                limit,
            )
        )

    async def reports(self, user_id: str) -> list[dict[str, Any]]:
        return _records(
            await self._pool.fetch(
                """SELECT id, reported AS other, reason, details, created_at
                   FROM reports WHERE reporter = $1 ORDER BY created_at""",
                uuid.UUID(user_id),
            )
        )
