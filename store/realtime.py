"""Look-ups the user socket needs: who else is in a conversation, and who a
user's matches are (to tell them about presence)."""

from __future__ import annotations

import uuid

import asyncpg


async def other_member(pool: asyncpg.Pool, conversation_id: str, user_id: str) -> str | None:
    """The other member of an open conversation the user belongs to, else None."""
    try:
        cid, uid = uuid.UUID(conversation_id), uuid.UUID(user_id)
    except ValueError:
        return None
    other = await pool.fetchval(
        """SELECT other.user_id
           FROM conversation_members me
           JOIN conversations c ON c.id = me.conversation_id AND c.closed_at IS NULL
           JOIN conversation_members other
             ON other.conversation_id = me.conversation_id AND other.user_id <> me.user_id
           WHERE me.conversation_id = $1 AND me.user_id = $2""",
        cid,
        uid,
    )
    return None if other is None else str(other)


async def match_partners(pool: asyncpg.Pool, user_id: str) -> list[str]:
    """Users with an active match with ``user_id``."""
    rows = await pool.fetch(
        """SELECT CASE WHEN user_a = $1 THEN user_b ELSE user_a END AS other
           FROM matches WHERE (user_a = $1 OR user_b = $1) AND ended_at IS NULL""",
        uuid.UUID(user_id),
    )
    return [str(r["other"]) for r in rows]
