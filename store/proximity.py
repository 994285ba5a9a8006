"""Proximity sessions and match decisions in Redis: the hot path.

On one Redis each public call is one round trip: one script. The scripts
live in ``lua/``. Sessions are hashes ``session:{ble_token}`` that expire with
their TTL; an exact count of live sessions is kept in a sorted set scored by
expiry.

A session can move to a new BLE token (``rotate_session``): its hash moves
whole, the old key becomes a forwarding alias (field ``to``) that match
attempts follow for a short grace period and that never matches after it,
and the session remembers its first token (``home``), whose channel its
sockets keep listening on.

On a Redis Cluster two sessions live in different slots, usually on
different nodes, so ``ClusterProximityStore`` splits the same decisions into
single-slot steps, issuing the steps on different slots concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

from protocol import bus
from store.mux import MuxCluster, MuxRedis
from store.redis_client import RedisClient, lua_source
from store.redis_keys import Keys

log = logging.getLogger(__name__)


class SessionWrite(IntEnum):
    CONFLICT = 0
    CREATED = 1
    REFRESHED = 2


@dataclass(frozen=True, slots=True)
class SessionWriteResult:
    outcome: SessionWrite
    expires_at_ms: int
    generation: str


class Rotation(IntEnum):
    UNAUTHORISED = -1
    CONFLICT = 0
    ROTATED = 1


@dataclass(frozen=True, slots=True)
class RotationResult:
    outcome: Rotation
    expires_at_ms: int = 0


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
    home_token: str | None = None  # a rotated session's first token: its sockets' channel


_UNAUTHORISED = MatchDecision(authorised=False, match=False)
_NO_MATCH = MatchDecision(authorised=True, match=False)
# The scripts publish nudges themselves: they are given the envelope's prefix.
NUDGE_PREFIX = bus.prefix(bus.NUDGE)
_REDIRECT: Final = 2
# How many forwarding aliases one match attempt follows (a token rotated
# twice within the grace period takes two).
MAX_ALIAS_HOPS: Final = 4
_AUTH_FIELDS: Final = ["secret", "expires_at", "user_id", "home"]
_ALIAS_FIELDS: Final = ("to", "grace_until", "home")


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
        self._rotate = mux.register_script(lua_source("rotate_session"))
        self._extend_home = mux.register_script(lua_source("extend_home"))

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
        status, expires_ms, gid, home = await self._mux.evalsha(
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
        result = SessionWriteResult(SessionWrite(int(status)), int(expires_ms), str(gid))
        await self._keep_home(result, str(home or ""))
        return result

    async def _keep_home(self, result: SessionWriteResult, home: str) -> None:
        """A refreshed rotated session keeps its first token reserved as long as it lives."""
        if result.outcome is SessionWrite.REFRESHED and home:
            await self._mux.evalsha(
                self._extend_home, [self._keys.session(home)], [result.generation, result.expires_at_ms]
            )

    async def decide_match(self, *, own_token: str, detected_token: str, presented_secret_hash: str) -> MatchDecision:
        for _ in range(MAX_ALIAS_HOPS + 1):
            reply = await self._decide_once(own_token, detected_token, presented_secret_hash)
            if isinstance(reply, MatchDecision):
                return reply
            own_token, detected_token = reply[0] or own_token, reply[1] or detected_token
        return _NO_MATCH  # aliases pointing on and on: no match rather than a loop

    async def _decide_once(
        self, own_token: str, detected_token: str, presented_secret_hash: str
    ) -> MatchDecision | tuple[str, str]:
        """The decision, or the tokens to ask again with when one was an alias in its grace period."""
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
                NUDGE_PREFIX,
                k.token_channel_prefix,
            ],
        )
        code = int(reply[0])
        if code < 0:
            return _UNAUTHORISED
        if code == 0:
            return _NO_MATCH
        if code == _REDIRECT:
            return str(reply[1] or ""), str(reply[2] or "")
        users = (str(reply[3]), str(reply[4])) if len(reply) > 4 and reply[3] and reply[4] else None
        return MatchDecision(True, True, tuple(str(reply[1]).split(",")), bool(int(reply[2])), users)

    async def index_user_session(self, user_id: str, ble_token: str, ttl_seconds: int) -> None:
        """Remember that the signed-in user opened this token's session, so an
        erasure can end it. The index lives as long as their newest session."""
        key = self._keys.user_sessions(user_id)
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.sadd(key, ble_token)
            pipe.expire(key, ttl_seconds)
            await pipe.execute()

    async def rotate_session(
        self, *, old_token: str, new_token: str, presented_secret_hash: str, grace_ms: int
    ) -> RotationResult:
        """Move a session to ``new_token`` in one round trip; ``old_token`` forwards for ``grace_ms``."""
        k = self._keys
        reply = await self._mux.evalsha(
            self._rotate,
            [k.session(old_token), k.session(new_token), k.active_sessions],
            [presented_secret_hash, old_token, new_token, grace_ms],
        )
        outcome = Rotation(int(reply[0]))
        return RotationResult(outcome, int(reply[1]) if outcome is Rotation.ROTATED else 0)

    async def session_auth(self, ble_token: str) -> SessionAuth | None:
        values = await self._client.hmget(self._keys.session(ble_token), _AUTH_FIELDS)
        return _auth(values)

    async def sessions_auth(self, ble_tokens: list[str]) -> list[SessionAuth | None]:
        """Many sessions' auth state in one pipelined round trip."""
        async with self._client.pipeline(transaction=False) as pipe:
            for token in ble_tokens:
                pipe.hmget(self._keys.session(token), _AUTH_FIELDS)
            replies = await pipe.execute()
        return [_auth(values) for values in replies]


def _auth(values: list[Any]) -> SessionAuth | None:
    secret, expires_at, user_id, home = values
    if not secret or not expires_at:
        return None
    return SessionAuth(secret, int(expires_at), user_id or None, home or None)


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

    A rotation cannot move the hash (the two tokens hash to different slots):
    it reads the session (old slot), writes it under the new token (new slot),
    then turns the old key into a forwarding alias, if it is still the session
    read; if that step fails the copy is removed again, so the session stays
    where it was. Last, concurrently, the pair marks added meanwhile are
    copied and the live-session index follows the token.
    """

    def __init__(self, client: RedisClient, mux: MuxCluster, keys: Keys, never_matching_category: str) -> None:
        super().__init__(client, mux, keys, never_matching_category)
        self._cluster = mux
        self._session = mux.register_script(lua_source("cluster_session", "_session_write"))
        self._index = mux.register_script(lua_source("cluster_session_index"))
        self._mark = mux.register_script(lua_source("cluster_mark"))
        self._count_match = mux.register_script(lua_source("cluster_count_match"))
        self._discard = mux.register_script(lua_source("cluster_session_discard"))
        self._rotate_read = mux.register_script(lua_source("cluster_rotate_read"))
        self._rotate_claim = mux.register_script(lua_source("cluster_rotate_claim"))
        self._rotate_alias = mux.register_script(lua_source("cluster_rotate_alias"))
        self._rotate_marks = mux.register_script(lua_source("cluster_rotate_marks"))
        self._rotate_index = mux.register_script(lua_source("cluster_rotate_index"))

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
        status, expires_ms, gid, home = await self._cluster.evalsha(
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
        result = SessionWriteResult(outcome, int(expires_ms), str(gid))
        await self._keep_home(result, str(home or ""))
        return result

    async def rotate_session(
        self, *, old_token: str, new_token: str, presented_secret_hash: str, grace_ms: int
    ) -> RotationResult:
        k = self._keys
        mux = self._cluster
        old_key, new_key = k.session(old_token), k.session(new_token)
        read = await mux.evalsha(self._rotate_read, [old_key], [presented_secret_hash])
        if int(read[0]) < 0:
            return RotationResult(Rotation.UNAUTHORISED)
        if old_token == new_token:
            return RotationResult(Rotation.CONFLICT)
        ttl_ms, pairs = int(read[1]), [str(v) for v in read[2:]]
        fields = dict(zip(pairs[::2], pairs[1::2], strict=True))
        gid, home = fields["gid"], fields.get("home") or old_token
        if not int(await mux.evalsha(self._rotate_claim, [new_key], [ttl_ms, home, *pairs])):
            return RotationResult(Rotation.CONFLICT)
        try:
            alias = await mux.evalsha(
                self._rotate_alias, [old_key], [presented_secret_hash, gid, new_token, home, old_token, grace_ms]
            )
        except Exception:
            with contextlib.suppress(Exception):
                await mux.evalsha(self._discard, [new_key], [gid])
            raise
        if int(alias[0]) < 0:  # ended, replaced or rotated meanwhile: the copy goes again
            await mux.evalsha(self._discard, [new_key], [gid])
            return RotationResult(Rotation.UNAUTHORISED)
        marks = [str(v) for v in alias[1:]]
        late = [v for f, m in zip(marks[::2], marks[1::2], strict=True) if f not in fields for v in (f, m)]
        index_args: list[str | bytes | int] = [old_token, new_token, fields["expires_at"]]
        follow_ups = [mux.evalsha(self._rotate_index, [k.active_sessions], index_args)]
        if late:
            follow_ups.append(mux.evalsha(self._rotate_marks, [new_key], [gid, *late]))
        results = await asyncio.gather(*follow_ups, return_exceptions=True)
        if any(isinstance(r, BaseException) for r in results):
            # The session has moved; only the live count or a pair mark lags.
            log.warning("rotation follow-up failed", extra={"errors": [type(r).__name__ for r in results]})
        return RotationResult(Rotation.ROTATED, int(fields["expires_at"]))

    async def decide_match(self, *, own_token: str, detected_token: str, presented_secret_hash: str) -> MatchDecision:
        for _ in range(MAX_ALIAS_HOPS + 1):
            reply = await self._decide_once(own_token, detected_token, presented_secret_hash)
            if isinstance(reply, MatchDecision):
                return reply
            own_token, detected_token = reply[0] or own_token, reply[1] or detected_token
        return _NO_MATCH

    async def _decide_once(
        self, own_token: str, detected_token: str, presented_secret_hash: str
    ) -> MatchDecision | tuple[str, str]:
        k = self._keys
        own_key, other_key = k.session(own_token), k.session(detected_token)
        mux = self._cluster
        own, other = await asyncio.gather(
            mux.execute_keyed(
                own_key, "HMGET", own_key, "secret", "gid", "interest_categories", "user_id", *_ALIAS_FIELDS
            ),
            mux.execute_keyed(other_key, "HMGET", other_key, "gid", "interest_categories", "user_id", *_ALIAS_FIELDS),
        )
        own_secret, own_gid, own_categories, own_user, own_to, own_grace, own_home = own
        if not own_secret or not hmac.compare_digest(own_secret, presented_secret_hash):
            return _UNAUTHORISED
        other_gid, other_categories, other_user, other_to, other_grace, other_home = other
        if own_token == detected_token or not other_gid:
            return _NO_MATCH
        if own_to or other_to:
            now_ms = int(time.time() * 1000)
            if (own_to and now_ms >= int(own_grace)) or (other_to and now_ms >= int(other_grace)):
                return _NO_MATCH
            return str(own_to or ""), str(other_to or "")
        shared = shared_categories(own_categories or "", other_categories or "", self._never)
        if not shared:
            return _NO_MATCH
        if own_user and other_user:
            hidden = k.hidden(own_user)
            if await mux.execute_keyed(hidden, "SISMEMBER", hidden, other_user):
                return _NO_MATCH
        event = bus.nudge(shared)
        # A rotated session's channel is its first token's, in another slot:
        # the mark does not publish there, a follow-up below does.
        own_in_slot = "" if own_home else k.token_channel(own_token)
        other_in_slot = "" if other_home else k.token_channel(detected_token)
        own_mark, other_mark = await asyncio.gather(
            mux.evalsha(
                self._mark,
                [own_key],
                [presented_secret_hash, own_gid, other_gid, own_in_slot, event],
            ),
            mux.evalsha(self._mark, [other_key], ["", other_gid, own_gid, other_in_slot, event]),
        )
        if int(own_mark) < 0:
            return _UNAUTHORISED  # the session ended or was replaced in between
        # Count the pair once: when the mark of its lower token is new.
        first_mark = own_mark if own_token < detected_token else other_mark
        follow_ups = []
        if int(first_mark) == 1:
            follow_ups.append(mux.evalsha(self._count_match, [k.pending_counters], []))
        for home, mark in ((own_home, own_mark), (other_home, other_mark)):
            if home and int(mark) == 1:
                channel = k.token_channel(str(home))
                follow_ups.append(mux.execute_keyed(channel, "SPUBLISH", channel, event))
        for user, mark in ((own_user, own_mark), (other_user, other_mark)):
            if user and int(mark) == 1:
                channel = k.user_channel(user)
                follow_ups.append(mux.execute_keyed(channel, "SPUBLISH", channel, event))
        if follow_ups:
            await asyncio.gather(*follow_ups)
        nudged = int(own_mark) == 1
        users = (str(own_user), str(other_user)) if nudged and own_user and other_user else None
        return MatchDecision(True, True, tuple(shared), nudged, users)
