"""Proximity logic: sessions, match attempts, and the sockets of a session.

Transport-free: handlers parse the request and call in here; this module
validates, derives what is stored (secret hash, interests hash, categories)
and calls the store. Raw interests never leave this module except as a hash
and category labels.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import heapq
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from config.settings import DEFAULT_TOKEN_ROTATION_GRACE_SECONDS
from protocol.codes import CloseCode, ErrorCode
from proximity_server.features.errors import BadRequest, Conflict, Unauthorized
from proximity_server.features.taxonomy import OTHER_CATEGORY, InterestError, Taxonomy, normalise_interests
from proximity_server.realtime.hub import Hub
from store.proximity import MatchDecision, ProximityStore, Rotation, SessionAuth, SessionWrite
from store.redis_keys import Keys

log = logging.getLogger(__name__)

BLE_TOKEN_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{8,64}")
SESSION_SECRET_BYTES: Final = 24  # 192 random bits
SESSION_SWEEP_SECONDS: Final = 1.0
WRONG_SESSION_MESSAGE: Final = "the session_id does not belong to a live session of own_token"

# Told of every authorised match decision (metrics count the nudges). Runs on
# the hot path: it must be quick and must not block; what it raises is logged.
DecisionListener = Callable[[MatchDecision], None]


def check_ble_token(value: object, field: str = "ble_token") -> str:
    if not isinstance(value, str) or not BLE_TOKEN_PATTERN.fullmatch(value):
        message = f"'{field}' must be 8-64 characters of A-Z, a-z, 0-9, '_' or '-'"
        raise BadRequest(message, code=ErrorCode.INVALID_FIELD)
    return value


def looks_like_access_token(credential: str) -> bool:
    """Access tokens are JWTs (three dot-separated parts); session secrets have no dots."""
    return credential.count(".") == 2


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def interests_digest(interests: list[str]) -> str:
    """SHA-256 of the normalised, sorted interests: comparable, not readable."""
    return hashlib.sha256("\n".join(sorted(interests)).encode()).hexdigest()


def iso_utc(epoch_ms: int) -> str:
    return dt.datetime.fromtimestamp(epoch_ms / 1000, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class SessionCreated:
    session_id: str
    expires_at_ms: int
    refreshed: bool


class ProximityService:
    """Sessions and match attempts; ``decision_listeners`` hear every authorised decision."""

    def __init__(
        self,
        store: ProximityStore,
        taxonomy: Taxonomy,
        session_ttl_seconds: int,
        *,
        rotation_grace_seconds: float = DEFAULT_TOKEN_ROTATION_GRACE_SECONDS,
        decision_listeners: Iterable[DecisionListener] = (),
    ) -> None:
        self._store = store
        self._taxonomy = taxonomy
        self._ttl = session_ttl_seconds
        self._grace_ms = round(rotation_grace_seconds * 1000)
        self._listeners = tuple(decision_listeners)

    async def create_session(
        self,
        ble_token: object,
        interests: object,
        *,
        presented_secret: str | None,
        user_id: str | None = None,
    ) -> SessionCreated:
        token = check_ble_token(ble_token)
        try:
            normalised = normalise_interests(interests)
        except InterestError as exc:
            raise BadRequest(str(exc), code=ErrorCode.INVALID_FIELD) from None
        categories = self._taxonomy.categories_for(normalised) or [OTHER_CATEGORY]
        secret = presented_secret or secrets.token_urlsafe(SESSION_SECRET_BYTES)
        result = await self._store.write_session(
            ble_token=token,
            secret_hash=hash_secret(secret),
            presented_secret_hash=hash_secret(presented_secret) if presented_secret else None,
            interests_hash=interests_digest(normalised),
            categories=categories,
            ttl_seconds=self._ttl,
            generation=secrets.token_hex(8),
            user_id=user_id,
        )
        if result.outcome is SessionWrite.CONFLICT:
            raise Conflict(
                "this BLE token already has a live session; send its session_id as a bearer token to refresh it"
            )
        if user_id is not None:
            await self._store.index_user_session(user_id, token, self._ttl)
        return SessionCreated(secret, result.expires_at_ms, result.outcome is SessionWrite.REFRESHED)

    async def attempt_match(self, own_token: object, detected_token: object, secret: str | None) -> MatchDecision:
        own = check_ble_token(own_token, "own_token")
        detected = check_ble_token(detected_token, "detected_token")
        if not secret:
            raise Unauthorized("send the own_token's session_id as 'Authorization: Bearer <session_id>'")
        decision = await self._store.decide_match(
            own_token=own, detected_token=detected, presented_secret_hash=hash_secret(secret)
        )
        if not decision.authorised:
            raise Unauthorized(WRONG_SESSION_MESSAGE)
        for listener in self._listeners:
            try:
                listener(decision)
            except Exception:  # the decision stands (it is published already): a listener never fails it
                log.exception("match decision listener failed")
        return decision

    async def rotate_token(self, own_token: object, new_token: object, secret: str | None) -> int:
        """Move the session of ``own_token`` to ``new_token``; returns its (unchanged) expiry, in ms.

        The secret and the expiry stay; the old token forwards match reports
        for the grace period, then never matches again.
        """
        old = check_ble_token(own_token, "own_token")
        new = check_ble_token(new_token, "new_token")
        if not secret:
            raise Unauthorized("send the own_token's session_id as 'Authorization: Bearer <session_id>'")
        result = await self._store.rotate_session(
            old_token=old, new_token=new, presented_secret_hash=hash_secret(secret), grace_ms=self._grace_ms
        )
        if result.outcome is Rotation.UNAUTHORISED:
            raise Unauthorized(WRONG_SESSION_MESSAGE)
        if result.outcome is Rotation.CONFLICT:
            raise Conflict("new_token is in use; pick another random token")
        return result.expires_at_ms

    async def authenticate_socket(self, ble_token: str, secret: str | None) -> SessionAuth:
        check_ble_token(ble_token)
        if not secret:
            raise Unauthorized("send the session_id as a bearer token or as ?session_id=")
        auth = await self._store.session_auth(ble_token)
        if auth is None or not hmac.compare_digest(auth.secret_hash, hash_secret(secret)):
            raise Unauthorized("the session_id does not belong to a live session of this BLE token")
        return auth


class SessionSockets:
    """Closes a token's sockets when the session that opened them ends.

    Each socket is remembered with its session's expiry; once a second the
    due ones are checked against Redis in one pipelined round trip (the
    session may have been refreshed) and the ended ones are closed with
    ``4410 session expired``.
    """

    def __init__(self, store: ProximityStore, hub: Hub, keys: Keys) -> None:
        self._store = store
        self._hub = hub
        self._keys = keys
        self._due: list[tuple[int, str, str]] = []  # (expires_at_ms, ble_token, secret_hash)
        self._watched: set[tuple[str, str]] = set()

    def watch(self, ble_token: str, auth: SessionAuth) -> None:
        key = (ble_token, auth.secret_hash)
        if key not in self._watched:
            self._watched.add(key)
            heapq.heappush(self._due, (auth.expires_at_ms, ble_token, auth.secret_hash))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(SESSION_SWEEP_SECONDS)
            try:
                await self.sweep(int(time.time() * 1000))
            except Exception:
                log.exception("session sweep failed; retrying")

    async def sweep(self, now_ms: int) -> None:
        due: list[tuple[str, str]] = []
        while self._due and self._due[0][0] <= now_ms:
            _, token, secret_hash = heapq.heappop(self._due)
            due.append((token, secret_hash))
        if not due:
            return
        try:
            states = await self._store.sessions_auth([token for token, _ in due])
        except Exception:
            for token, secret_hash in due:  # try again on the next sweep
                heapq.heappush(self._due, (now_ms + int(SESSION_SWEEP_SECONDS * 1000), token, secret_hash))
            raise
        for (token, secret_hash), state in zip(due, states, strict=True):
            channel = self._keys.token_channel(token)
            live = any(c.tag == secret_hash for c in self._hub.connections(channel))
            if state is not None and state.secret_hash == secret_hash and live:
                heapq.heappush(self._due, (state.expires_at_ms, token, secret_hash))
                continue
            self._watched.discard((token, secret_hash))
            if live:
                await self._hub.close_channel(channel, CloseCode.SESSION_EXPIRED, tag=secret_hash)
