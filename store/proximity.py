"""Proximity sessions and match decisions in Redis: the hot path.

On one Redis each public call is one round trip: one script. The scripts
live in ``lua/``. Sessions are hashes ``session:{ble_token}`` that expire with
their TTL; an exact count of live sessions is kept in a sorted set scored by
expiry.

On a Redis Cluster two sessions live in different slots, usually on
different nodes, so ``ClusterProximityStore`` splits the same decisions into
single-slot steps, issuing the steps on different slots concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from store.mux import MuxCluster, MuxRedis
from store.redis_client import RedisClient, lua_source
from store.redis_keys import Keys


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
    # Both user ids when a new nudge joined two signed-in people (crossed paths).
    users: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class SessionAuth:
    """What a socket needs to know about the session behind it."""

    secret_hash: str
    expires_at_ms: int
    user_id: str | None


_UNAUTHORISED = MatchDecision(authorised=False, match=False)
_NO_MATCH = MatchDecision(authorised=True, match=False)
NUDGE_EVENT_PREFIX = "nudge|"


def shared_categories(own: str, other: str, never: str) -> list[str]:
    """The categories two sessions share (comma-separated lists), sorted, never ``never``."""
    mine = set(own.split(",")) if own else set()
    return sorted({c for c in other.split(",") if c and c in mine and c != never})


class ProximityStore:
    def __init__(
        self, client: RedisClient, mux: MuxRedis | MuxCluster, keys: Keys, never_matching_category: str
    ) -> None:
        self._client = client
        self._mux = mux  # the hot path's shared, pipelined connection
        self._keys = keys
        self._never = never_matching_category
        self._create = mux.register_script(lua_source("create_session", "_session_write"))
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
                k.token_channel(own_token),
                k.token_channel(detected_token),
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
        users = (str(reply[3]), str(reply[4])) if len(reply) > 4 and reply[3] and reply[4] else None
        return MatchDecision(True, True, tuple(str(reply[1]).split(",")), bool(int(reply[2])), users)

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


class ClusterProximityStore(ProximityStore):
    """The same decisions on a Redis Cluster, in single-slot steps.

    A session write is two steps: the session hash (its slot), then the
    live-session index and counters (the ``{stats}`` slot); a session created
    by a write whose second step failed is removed again.

    A match decision reads both sessions concurrently (one round trip, two
    nodes). Most decisions end there: no shared category. A match then
    checks the block list if both people are signed in (a third slot), and
    marks each session concurrently; each mark publishes to its own token's
    channel in the same script. A new nudge ends with counting it and
    publishing to the users' channels, concurrently.
    """

    def __init__(self, client: RedisClient, mux: MuxCluster, keys: Keys, never_matching_category: str) -> None:
        super().__init__(client, mux, keys, never_matching_category)
        self._cluster = mux
        self._session = mux.register_script(lua_source("cluster_session", "_session_write"))
        self._index = mux.register_script(lua_source("cluster_session_index"))
        self._mark = mux.register_script(lua_source("cluster_mark"))
        self._count_match = mux.register_script(lua_source("cluster_count_match"))
        self._discard = mux.register_script(lua_source("cluster_session_discard"))

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
        k = self._keys
        csv = ",".join(categories)
        status, expires_ms, gid = await self._cluster.evalsha(
            self._session,
            [k.session(ble_token)],
            [secret_hash, presented_secret_hash or "", interests_hash, csv, ttl_seconds, generation, user_id or ""],
        )
        outcome = SessionWrite(int(status))
        if outcome is not SessionWrite.CONFLICT:
            created = 1 if outcome is SessionWrite.CREATED else 0
            try:
                await self._cluster.evalsha(
                    self._index, [k.active_sessions, k.pending_counters], [ble_token, int(expires_ms), created, csv]
                )
            except Exception:
                if created:  # the caller gets an error, not the secret: free the token again
                    with contextlib.suppress(Exception):
                        await self._cluster.evalsha(self._discard, [k.session(ble_token)], [str(gid)])
                raise
        return SessionWriteResult(outcome, int(expires_ms), str(gid))

    async def decide_match(self, *, own_token: str, detected_token: str, presented_secret_hash: str) -> MatchDecision:
        k = self._keys
        own_key, other_key = k.session(own_token), k.session(detected_token)
        mux = self._cluster
        own, other = await asyncio.gather(
            mux.execute_keyed(own_key, "HMGET", own_key, "secret", "gid", "interest_categories", "user_id"),
            mux.execute_keyed(other_key, "HMGET", other_key, "gid", "interest_categories", "user_id"),
        )
        own_secret, own_gid, own_categories, own_user = own
        if not own_secret or not hmac.compare_digest(own_secret, presented_secret_hash):
            return _UNAUTHORISED
        other_gid, other_categories, other_user = other
        if own_token == detected_token or not other_gid:
            return _NO_MATCH
        shared = shared_categories(own_categories or "", other_categories or "", self._never)
        if not shared:
            return _NO_MATCH
        if own_user and other_user:
            hidden = k.hidden(own_user)
            if await mux.execute_keyed(hidden, "SISMEMBER", hidden, other_user):
                return _NO_MATCH
        event = NUDGE_EVENT_PREFIX + ",".join(shared)
        own_mark, other_mark = await asyncio.gather(
            mux.evalsha(
                self._mark,
                [own_key],
                [presented_secret_hash, own_gid, other_gid, k.token_channel(own_token), event],
            ),
            mux.evalsha(self._mark, [other_key], ["", other_gid, own_gid, k.token_channel(detected_token), event]),
        )
        if int(own_mark) < 0:
            return _UNAUTHORISED  # the session ended or was replaced in between
        # Count the pair once: when the mark of its lower token is new.
        first_mark = own_mark if own_token < detected_token else other_mark
        follow_ups = []
        if int(first_mark) == 1:
            follow_ups.append(mux.evalsha(self._count_match, [k.pending_counters], []))
        for user, mark in ((own_user, own_mark), (other_user, other_mark)):
            if user and int(mark) == 1:
                channel = k.user_channel(user)
                follow_ups.append(mux.execute_keyed(channel, "SPUBLISH", channel, event))
        if follow_ups:
            await asyncio.gather(*follow_ups)
        nudged = int(own_mark) == 1
        users = (str(own_user), str(other_user)) if nudged and own_user and other_user else None
        return MatchDecision(True, True, tuple(shared), nudged, users)
