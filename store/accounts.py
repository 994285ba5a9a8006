"""Users, refresh tokens and the per-user "tokens valid after" instant.

PostgreSQL holds the truth; Redis caches ``tokens_valid_after`` so that an
authenticated request checks revocation (and counts its rate limit) in one
round trip: one script (``lua/access_check.lua``) on the multiplexed
connection, or, on a Redis Cluster (where the two keys live in different
slots), one redis-py pipeline. PostgreSQL is read only when the cache is
empty. The cache is filled with SET NX and overwritten after every change,
so a reader that raced a "log out everywhere" cannot keep a stale value alive.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Final

import asyncpg

from protocol import bus
from store.mux import MuxCluster, MuxRedis
from store.pubsub import Publisher
from store.redis_client import RedisClient, lua_source
from store.redis_keys import Keys

VALID_AFTER_CACHE_SECONDS: Final = 24 * 3600
# Cache value for a user that does not exist (any more).
NO_USER: Final = "-"


class EmailTaken(Exception):
    """A live account already uses this email."""


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    password_hash: str
    banned: bool = False


@dataclass(frozen=True, slots=True)
class AccessCheck:
    """What one authenticated request learns from Redis in one round trip."""

    valid_after_ms: int | None  # None: user gone; 0: no cut-off
    cached: bool
    api_hits: int


class RotationOutcome:
    ROTATED = "rotated"
    REUSED = "reused"  # the token was used before: its family is now revoked
    INVALID = "invalid"  # unknown, expired or revoked


@dataclass(frozen=True, slots=True)
class Rotation:
    outcome: str
    user_id: str | None = None
    family_id: str | None = None
    email: str | None = None


def _user(row: asyncpg.Record) -> User:
    return User(
        id=str(row["id"]),
        email=row["email"],
        password_hash=row["password_hash"],
        banned=bool(row.get("banned")),
    )


class AccountStore:
    def __init__(
        self, pool: asyncpg.Pool, client: RedisClient, mux: MuxRedis | MuxCluster, keys: Keys, publisher: Publisher
    ) -> None:
        self._pool = pool
        self._client = client
        # A script needs all its keys in one slot: on a cluster the check is
        # one command per key, concurrently, on the cluster's multiplexed
        # connections (one per primary: no connection storm under load).
        self._mux = mux if isinstance(mux, MuxRedis) else None
        self._cluster_mux = mux if isinstance(mux, MuxCluster) else None
        self._access_check = mux.register_script(lua_source("access_check"))
        self._keys = keys
        self._publisher = publisher

    # -- users -------------------------------------------------------------

    async def create_user(self, email: str, password_hash: str) -> User:
        try:
            row = await self._pool.fetchrow(
                """INSERT INTO users (email, password_hash) VALUES ($1, $2)
                   RETURNING id, email, password_hash""",
                email,
                password_hash,
            )
        except asyncpg.UniqueViolationError:
            raise EmailTaken(email) from None
        return _user(row)

    async def user_by_email(self, email: str) -> User | None:
        row = await self._pool.fetchrow(
            """SELECT id, email, password_hash, banned_at IS NOT NULL AS banned
               FROM users WHERE email = $1 AND deleted_at IS NULL""",
            email,
        )
        return None if row is None else _user(row)

    async def live_password_hash(self, user_id: str) -> str | None:
        """The password hash of a live account (None once erased)."""
        value: str | None = await self._pool.fetchval(
            "SELECT password_hash FROM users WHERE id = $1 AND deleted_at IS NULL", uuid.UUID(user_id)
        )
        return value

    async def update_password_hash(self, user_id: str, password_hash: str) -> None:
        await self._pool.execute("UPDATE users SET password_hash = $2 WHERE id = $1", uuid.UUID(user_id), password_hash)

    # -- refresh tokens ----------------------------------------------------

    async def add_refresh_token(self, token_hash: bytes, user_id: str, family_id: str, expires_at: dt.datetime) -> None:
        await self._pool.execute(
            """INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at)
               VALUES ($1, $2, $3, $4)""",
            token_hash,
            uuid.UUID(user_id),
            uuid.UUID(family_id),
            expires_at,
        )

    async def rotate_refresh_token(
        self, old_hash: bytes, new_hash: bytes, now: dt.datetime, expires_at: dt.datetime
    ) -> Rotation:
        """Mark ``old_hash`` used and add ``new_hash`` to its family, atomically.

        A token that was already used revokes its whole family (someone holds a
        copy). The row lock makes two concurrent rotations of one token see
        each other: the second is a reuse.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """SELECT t.user_id, t.family_id, t.expires_at, t.used_at, t.revoked_at,
                          u.deleted_at IS NOT NULL OR u.banned_at IS NOT NULL AS user_deleted, u.email
                   FROM refresh_tokens t JOIN users u ON u.id = t.user_id
                   WHERE t.token_hash = $1
                   FOR UPDATE OF t""",
                old_hash,
            )
            if row is None:
                return Rotation(RotationOutcome.INVALID)
            user_id, family_id = str(row["user_id"]), str(row["family_id"])
            if row["revoked_at"] is not None or row["user_deleted"]:
                return Rotation(RotationOutcome.INVALID, user_id, family_id)
            if row["used_at"] is not None:
                await self._revoke_family_in_transaction(conn, row["family_id"], now)
                return Rotation(RotationOutcome.REUSED, user_id, family_id)
            if row["expires_at"] <= now:
                return Rotation(RotationOutcome.INVALID, user_id, family_id)
            await conn.execute("UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1", old_hash, now)
            await conn.execute(
                """INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at)
                   VALUES ($1, $2, $3, $4)""",
                new_hash,
                row["user_id"],
                row["family_id"],
                expires_at,
            )
            return Rotation(RotationOutcome.ROTATED, user_id, family_id, row["email"])

    @staticmethod
    async def _revoke_family_in_transaction(conn: asyncpg.Connection, family_id: uuid.UUID, now: dt.datetime) -> None:
        await conn.execute(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL", family_id, now
        )

    async def revoke_family_of(self, token_hash: bytes, now: dt.datetime) -> bool:
        """Revoke the family of this token; False if the token is unknown."""
        family = await self._pool.fetchval(
            """UPDATE refresh_tokens SET revoked_at = $2
               WHERE family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1)
                 AND revoked_at IS NULL
               RETURNING family_id""",
            token_hash,
            now,
        )
        if family is not None:
            return True
        known = await self._pool.fetchval("SELECT 1 FROM refresh_tokens WHERE token_hash = $1", token_hash)
        return known is not None

    async def revoke_all_tokens(self, user_id: str, now: dt.datetime) -> None:
        """Every refresh token of the user dies; earlier access tokens too."""
        uid = uuid.UUID(user_id)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("UPDATE users SET tokens_valid_after = $2 WHERE id = $1", uid, now)
            await conn.execute(
                "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL", uid, now
            )
        await self._client.set(self._keys.tokens_valid_after(user_id), str(_ms(now)), ex=VALID_AFTER_CACHE_SECONDS)

    # -- the per-request check ---------------------------------------------

    async def access_check(self, user_id: str, api_bucket: str | None, window_ms: int) -> AccessCheck:
        """One round trip: the cached cut-off and this request's API hit count
        (0 when ``api_bucket`` is None: a request that is not counted)."""
        cut_off_key = self._keys.tokens_valid_after(user_id)
        if self._mux is not None:
            keys = [cut_off_key] if api_bucket is None else [cut_off_key, api_bucket]
            cached, hits = await self._mux.evalsha(self._access_check, keys, [window_ms])
        elif self._cluster_mux is not None:
            mux = self._cluster_mux
            if api_bucket is None:
                cached, hits = await mux.execute_keyed(cut_off_key, "GET", cut_off_key), 0
            else:
                cached, hits, _ = await asyncio.gather(
                    mux.execute_keyed(cut_off_key, "GET", cut_off_key),
                    mux.execute_keyed(api_bucket, "INCR", api_bucket),
                    mux.execute_keyed(api_bucket, "PEXPIRE", api_bucket, window_ms),
                )
        else:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.get(cut_off_key)
                if api_bucket is not None:
                    pipe.incr(api_bucket)
                    pipe.pexpire(api_bucket, window_ms)
                cached, *counted = await pipe.execute()
            hits = counted[0] if counted else 0
        if cached is None:
            return AccessCheck(valid_after_ms=None, cached=False, api_hits=int(hits))
        value = cached.decode() if isinstance(cached, bytes) else str(cached)
        return AccessCheck(None if value == NO_USER else int(value), cached=True, api_hits=int(hits))

    async def load_valid_after_ms(self, user_id: str) -> int | None:
        """From PostgreSQL, then cached (unless a newer value got there first)."""
        row = await self._pool.fetchrow(
            "SELECT tokens_valid_after FROM users WHERE id = $1 AND deleted_at IS NULL", uuid.UUID(user_id)
        )
        if row is None:
            value: int | None = None
        else:
            cut_off = row["tokens_valid_after"]
            value = 0 if cut_off is None else _ms(cut_off)
        key, cached = self._keys.tokens_valid_after(user_id), NO_USER if value is None else str(value)
        if self._cluster_mux is not None:
            await self._cluster_mux.execute_keyed(key, "SET", key, cached, "EX", VALID_AFTER_CACHE_SECONDS, "NX")
        else:
            await self._client.set(key, cached, ex=VALID_AFTER_CACHE_SECONDS, nx=True)
        return value

    async def publish_logout(self, user_id: str, before_ms: int) -> None:
        """Tell every process: the user's sockets opened before ``before_ms`` close (4401)."""
        await self._publisher.publish(self._keys.user_channel(user_id), bus.logout(before_ms))


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)
