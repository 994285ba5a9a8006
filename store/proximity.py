"""Proximity sessions and match decisions in Redis: the hot path.

Each public call is one Redis round trip. The scripts live in ``lua/``.
Sessions are hashes ``session:{ble_token}`` that expire with their TTL; an
exact count of live sessions is kept in a sorted set scored by expiry.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import redis.asyncio as aioredis

from store.keys import Keys
from store.mux import MuxRedis
from store.redis_client import lua_source


class SessionWrite(IntEnum):
    CONFLICT = 0
    CREATED = 1
    REFRESHED = 2


@dataclass(frozen=True, slots=True)
class SessionWriteResult:
    outcome: SessionWrite
    expires_at_ms: int
    generation: str


@dataclass(frozen=True, slots=True)
class MatchDecision:
    authorised: bool
    match: bool
    shared_categories: tuple[str, ...] = ()
    nudged: bool = False


@dataclass(frozen=True, slots=True)
class SessionAuth:
    """What a socket needs to know about the session behind it."""

    secret_hash: str
    expires_at_ms: int
    user_id: str | None


_UNAUTHORISED = MatchDecision(authorised=False, match=False)
_NO_MATCH = MatchDecision(authorised=True, match=False)


class ProximityStore:
    def __init__(self, client: aioredis.Redis, mux: MuxRedis, keys: Keys, never_matching_category: str) -> None:
        self._client = client
        self._mux = mux  # the hot path's shared, pipelined connection
        self._keys = keys
        self._never = never_matching_category
        self._create = mux.register_script(lua_source("create_session"))
        self._match = mux.register_script(lua_source("match"))

    async def write_session(
        self,
        *,
        ble_token: str,
        secret_hash: str,
        presented_secret_hash: str | None,
        interests_hash: str,
        categories: list[str],
        ttl_seconds: int,
        generation: str,
        user_id: str | None,
    ) -> SessionWriteResult:
        """Create the session, or refresh it when the caller proved it owns it."""
        k = self._keys
        status, expires_ms, gid = await self._mux.evalsha(
            self._create,
            [k.session(ble_token), k.active_sessions, k.pending_counters],
            [
                secret_hash,
                presented_secret_hash or "",
                interests_hash,
                ",".join(categories),
                ttl_seconds,
                ble_token,
                generation,
                user_id or "",
            ],
        )
        return SessionWriteResult(SessionWrite(int(status)), int(expires_ms), str(gid))

    async def decide_match(self, *, own_token: str, detected_token: str, presented_secret_hash: str) -> MatchDecision:
        k = self._keys
        reply = await self._mux.evalsha(
            self._match,
            [k.session(own_token), k.session(detected_token), k.pending_counters],
            [
                presented_secret_hash,
                own_token,
                detected_token,
                k.token_channel_prefix,
                self._never,
                k.user_channel_prefix,
                k.hidden_prefix,
            ],
        )
        code = int(reply[0])
        if code < 0:
            return _UNAUTHORISED
        if code == 0:
            return _NO_MATCH
        return MatchDecision(True, True, tuple(str(reply[1]).split(",")), bool(int(reply[2])))

    async def session_auth(self, ble_token: str) -> SessionAuth | None:
        values = await self._client.hmget(self._keys.session(ble_token), ["secret", "expires_at", "user_id"])
        return _auth(values)

    async def sessions_auth(self, ble_tokens: list[str]) -> list[SessionAuth | None]:
        """Many sessions' auth state in one pipelined round trip."""
        async with self._client.pipeline(transaction=False) as pipe:
            for token in ble_tokens:
                pipe.hmget(self._keys.session(token), ["secret", "expires_at", "user_id"])
            replies = await pipe.execute()
        return [_auth(values) for values in replies]


def _auth(values: list[Any]) -> SessionAuth | None:
    secret, expires_at, user_id = values
    if not secret or not expires_at:
        return None
    return SessionAuth(secret, int(expires_at), user_id or None)
