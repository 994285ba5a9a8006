"""Accounts: register, log in, rotate refresh tokens, log out.

Login answers a wrong password and an unknown email with the same 401 after
the same amount of work (an unknown email is verified against a dummy hash).
Refresh tokens rotate: each is good for one refresh, and presenting one a
second time revokes its whole family (the login it descends from), since
then two parties hold it. "Log out everywhere" revokes every refresh token
and moves the user's ``tokens_valid_after`` forward, which every
authenticated request checks against the access token's ``iat``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from protocol.codes import ErrorCode
from proximity_server.features.errors import BadRequest, Conflict, Forbidden, Unauthorized
from proximity_server.features.passwords import Passwords, check_password_rules
from proximity_server.features.rate_limit import WINDOW_MS, RateLimiter, current_window, raise_if_over
from proximity_server.features.tokens import (
    REFRESH_TOKEN_TTL_SECONDS,
    AccessClaims,
    AccessTokens,
    InvalidToken,
    new_refresh_token,
    refresh_token_hash,
)
from store.accounts import AccountStore, EmailTaken, RotationOutcome

MAX_EMAIL_LENGTH: Final = 254
MAX_REFRESH_TOKEN_LENGTH: Final = 128
_EMAIL_SHAPE: Final = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")
BAD_CREDENTIALS: Final = "wrong email or password"
BAD_REFRESH_TOKEN: Final = "invalid refresh token"  # noqa: S105 (a message)
MISSING_ACCESS_TOKEN: Final = "send an access token"  # noqa: S105 (a message)
BAD_ACCESS_TOKEN: Final = "invalid or expired access token"  # noqa: S105 (a message)

# Web app mode: the refresh token travels in an HttpOnly cookie scoped to
# /auth, and only on requests that carry the custom header (see README,
# "Web app sign-in", for why a cross-site request cannot use it).
REFRESH_COOKIE: Final = "px_refresh"
REFRESH_COOKIE_PATH: Final = "/auth"
REFRESH_COOKIE_HEADER: Final = "X-Refresh-Cookie"
REFRESH_COOKIE_HEADER_VALUE: Final = "1"
CSRF_CODE: Final = "csrf"
BANNED_CODE: Final = "banned"
_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.", "127.0.0.1", "::1"})


@dataclass(frozen=True, slots=True)
class TokenPair:
    user_id: str
    access_token: str
    refresh_token: str
    expires_in: int


def normalise_email(raw: str) -> str:
    email = raw.strip().lower()
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL_SHAPE.fullmatch(email):
        raise BadRequest("'email' is not a valid email address", code=ErrorCode.INVALID_FIELD)
    return email


def check_refresh_token_shape(token: str) -> None:
    if not token or len(token) > MAX_REFRESH_TOKEN_LENGTH:
        raise Unauthorized(BAD_REFRESH_TOKEN)


def is_loopback_host(host: str | None) -> bool:
    """``localhost`` (and its subdomains), 127.0.0.0/8 or ::1."""
    if not host:
        return False
    name = host.lower().strip("[]")
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def refresh_cookie_secure(scheme: str, host: str | None, forwarded_proto: str | None) -> bool:
    """Whether the refresh cookie gets ``Secure``: always, except over plain
    HTTP to a loopback host (a laptop). A client's ``X-Forwarded-Proto:
    https`` only ever adds ``Secure``, so it needs no trusted proxy."""
    if scheme == "https" or (forwarded_proto or "").split(",")[0].strip().lower() == "https":
        return True
    return not is_loopback_host(host)


def _utc(now: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, dt.UTC)


class AccountService:
    def __init__(
        self,
        store: AccountStore,
        passwords: Passwords,
        tokens: AccessTokens,
        limiter: RateLimiter,
        admin_emails: frozenset[str] = frozenset(),
        on_active: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._admin_emails = admin_emails
        self._on_active = on_active
        self._passwords = passwords
        self._tokens = tokens
        self.limiter = limiter

    async def register(self, email: str, password: str) -> TokenPair:
        check_password_rules(password)
        password_hash = await self._passwords.hash(password)
        try:
            user = await self._store.create_user(email, password_hash)
        except EmailTaken:
            raise Conflict("an account with this email already exists") from None
        return await self._start_family(user.id, admin=self.is_admin_email(user.email))

    def is_admin_email(self, email: str | None) -> bool:
        return email is not None and email.lower() in self._admin_emails

    async def login(self, email: str, password: str) -> TokenPair:
        user = await self._store.user_by_email(email)
        ok = await self._passwords.verify(None if user is None else user.password_hash, password)
        if user is None or not ok:
            raise Unauthorized(BAD_CREDENTIALS)
        if user.banned:
            raise Forbidden("this account is banned", code=BANNED_CODE)
        if self._passwords.needs_rehash(user.password_hash):
            await self._store.update_password_hash(user.id, await self._passwords.hash(password))
        return await self._start_family(user.id, admin=self.is_admin_email(user.email))

    async def refresh(self, refresh_token: str) -> TokenPair:
        check_refresh_token_shape(refresh_token)
        now = time.time()
        new_token = new_refresh_token()
        rotation = await self._store.rotate_refresh_token(
            refresh_token_hash(refresh_token),
            refresh_token_hash(new_token),
            _utc(now),
            _utc(now + REFRESH_TOKEN_TTL_SECONDS),
        )
        if rotation.outcome == RotationOutcome.REUSED:
            raise Unauthorized("this refresh token was already used; its session has been revoked")
        if rotation.outcome != RotationOutcome.ROTATED or rotation.user_id is None:
            raise Unauthorized(BAD_REFRESH_TOKEN)
        access = self._tokens.issue(rotation.user_id, now, admin=self.is_admin_email(rotation.email))
        return TokenPair(rotation.user_id, access.token, new_token, access.expires_in)

    async def logout(self, refresh_token: str) -> None:
        check_refresh_token_shape(refresh_token)
        if not await self._store.revoke_family_of(refresh_token_hash(refresh_token), _utc(time.time())):
            raise Unauthorized(BAD_REFRESH_TOKEN)

    async def logout_all(self, user_id: str) -> None:
        now = time.time()
        await self._store.revoke_all_tokens(user_id, _utc(now))
        await self.announce_logout(user_id, now)

    async def announce_logout(self, user_id: str, now: float) -> None:
        """Tell the user's open sockets that tokens issued before ``now`` are dead (they close with 4401)."""
        await self._store.publish_logout(user_id, int(now * 1000))  # ms, like iat checks

    async def reauthenticate(self, user_id: str, password: str) -> None:
        """Fresh proof for a grave action: the account's current password, or 401."""
        password_hash = await self._store.live_password_hash(user_id)
        ok = await self._passwords.verify(password_hash, password)
        if password_hash is None or not ok:
            raise Unauthorized("wrong password")

    async def verify_access(
        self, token: str | None, *, count: bool = True, missing: str = MISSING_ACCESS_TOKEN
    ) -> AccessClaims:
        """The claims of a valid access token, for every transport. Raises
        Unauthorized when the token is missing (with the ``missing`` message,
        which tells the client where to put it), malformed, expired or
        revoked, and RateLimited over the user's API limit; ``count=False``
        leaves that limit alone (see ``authorize``)."""
        if not token:
            raise Unauthorized(missing)
        try:
            claims = self._tokens.verify(token)
        except InvalidToken:
            raise Unauthorized(BAD_ACCESS_TOKEN) from None
        await self.authorize(claims, count=count)
        if self._on_active is not None:
            self._on_active(claims.user_id)
        return claims

    async def authorize(self, claims: AccessClaims, *, count: bool = True) -> None:
        """Refuse a revoked token (or a gone user); count the call against the
        user's API limit unless ``count`` is False."""
        window = current_window(int(time.time() * 1000))
        bucket = self.limiter.api_bucket(claims.user_id, window) if count else None
        check = await self._store.access_check(claims.user_id, bucket, WINDOW_MS)
        valid_after_ms = check.valid_after_ms
        if not check.cached:
            valid_after_ms = await self._store.load_valid_after_ms(claims.user_id)
        if valid_after_ms is None:
            raise Unauthorized("this account no longer exists")
        if claims.issued_at * 1000 < valid_after_ms:
            raise Unauthorized("this token was revoked")
        raise_if_over(check.api_hits, self.limiter.api_per_minute, window)

    async def _start_family(self, user_id: str, *, admin: bool = False) -> TokenPair:
        now = time.time()
        refresh_token = new_refresh_token()
        await self._store.add_refresh_token(
            refresh_token_hash(refresh_token), user_id, str(uuid.uuid4()), _utc(now + REFRESH_TOKEN_TTL_SECONDS)
        )
        access = self._tokens.issue(user_id, now, admin=admin)
        return TokenPair(user_id, access.token, refresh_token, access.expires_in)
