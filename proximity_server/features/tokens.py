"""Access tokens (JWT, HS256) and opaque refresh tokens.

Access tokens carry ``iss``, ``aud``, ``exp``, ``iat``, ``sub`` (the user id)
and ``jti``; all are required when decoding, and only HS256 is accepted, so
``alg: none`` and tokens signed with any other algorithm are refused. ``iat``
has millisecond precision so that "log out everywhere" can tell a token
issued just before it from one issued just after.

Verifying a token (base64, JSON, HMAC, claim checks) is the costliest step
of an authenticated request that does no other work, and a client sends the
same token for up to 15 minutes. So each process remembers the tokens it has
verified in a small LRU (``VERIFIED_TOKEN_CACHE_SIZE`` entries), keyed by the
whole token string: a hit is a token byte-for-byte identical to one whose
signature, issuer, audience and claims were checked, and it is refused once
its ``exp`` has passed, like pyjwt would. Revocation is not cached: every
request still checks ``tokens_valid_after`` (see ``auth``).

Refresh tokens are 256 random bits; only their SHA-256 is ever stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import tempfile
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import jwt

JWT_ALGORITHM: Final = "HS256"
ACCESS_TOKEN_TTL_SECONDS: Final = 15 * 60
REFRESH_TOKEN_TTL_SECONDS: Final = 7 * 24 * 3600
REFRESH_TOKEN_BYTES: Final = 32
JWT_SECRET_BYTES: Final = 32
JWT_SECRET_FILE_NAME: Final = "jwt_secret"  # noqa: S105 (a file name)
JWT_SECRET_FILE_MODE: Final = 0o600
MIN_JWT_SECRET_LENGTH: Final = 32
_REQUIRED_CLAIMS: Final = ("iss", "aud", "exp", "iat", "sub", "jti")
VERIFIED_TOKEN_CACHE_SIZE: Final = 4096
# The ``role`` claim of an admin's access token (absent for everybody else).
ROLE_CLAIM: Final = "role"
ADMIN_ROLE: Final = "admin"


class InvalidToken(Exception):
    """The access token is malformed, forged, expired or not for us."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: str
    jti: str
    issued_at: float  # unix seconds, millisecond precision
    admin: bool = False  # the token carries the admin role claim


@dataclass(frozen=True, slots=True)
class _Verified:
    claims: AccessClaims
    expires_at: float  # ``exp``: refused from this instant on


@dataclass(frozen=True, slots=True)
class IssuedAccessToken:
    token: str
    claims: AccessClaims
    expires_in: int


class AccessTokens:
    def __init__(
        self,
        secret: bytes,
        issuer: str,
        audience: str,
        ttl_seconds: int = ACCESS_TOKEN_TTL_SECONDS,
        *,
        cache_size: int = VERIFIED_TOKEN_CACHE_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl_seconds
        self._cache_size = cache_size
        self._clock = clock
        self._verified: OrderedDict[str, _Verified] = OrderedDict()

    def issue(self, user_id: str, now: float, *, admin: bool = False) -> IssuedAccessToken:
        issued_at = round(now, 3)
        jti = uuid.uuid4().hex
        payload: dict[str, object] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": user_id,
            "iat": issued_at,
            "exp": int(now) + self._ttl,
            "jti": jti,
        }
        if admin:
            payload[ROLE_CLAIM] = ADMIN_ROLE
        token = jwt.encode(payload, self._secret, algorithm=JWT_ALGORITHM)
        return IssuedAccessToken(token, AccessClaims(user_id, jti, issued_at, admin), self._ttl)

    def verify(self, token: str) -> AccessClaims:
        """The claims of a valid token; raises InvalidToken. Remembers valid tokens until they expire."""
        hit = self._verified.get(token)
        if hit is not None:
            if self._clock() < hit.expires_at:
                self._verified.move_to_end(token)
                return hit.claims
            del self._verified[token]
            raise InvalidToken("Signature has expired")
        claims, expires_at = self._decode(token)
        self._verified[token] = _Verified(claims, expires_at)
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return claims

    @property
    def cached_tokens(self) -> int:
        return len(self._verified)

    def _decode(self, token: str) -> tuple[AccessClaims, float]:
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[JWT_ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": list(_REQUIRED_CLAIMS)},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from None
        sub, jti, iat, exp = payload["sub"], payload["jti"], payload["iat"], payload["exp"]
        if not isinstance(sub, str) or not isinstance(jti, str) or not isinstance(iat, int | float):
            raise InvalidToken("malformed claims")
        try:
            user_id = str(uuid.UUID(sub))
        except ValueError:
            raise InvalidToken("malformed subject") from None
        admin = payload.get(ROLE_CLAIM) == ADMIN_ROLE
        return AccessClaims(user_id, jti, float(iat), admin), float(int(exp))  # as pyjwt compares it


def new_refresh_token() -> str:
    return secrets.token_urlsafe(REFRESH_TOKEN_BYTES)


def refresh_token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def load_or_create_secret(configured: str | None, data_dir: Path) -> bytes:
    """The configured secret, or the one kept in ``data_dir`` (created once).

    Creation is atomic: the secret is written to a private temporary file and
    hard-linked into place, which fails if another process got there first;
    then everybody reads the one that won.
    """
    if configured:
        if len(configured) < MIN_JWT_SECRET_LENGTH:
            raise ValueError(f"JWT_SECRET must be at least {MIN_JWT_SECRET_LENGTH} characters")
        return configured.encode()
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / JWT_SECRET_FILE_NAME
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".jwt_secret.")  # created with mode 0600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(secrets.token_urlsafe(JWT_SECRET_BYTES))
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, JWT_SECRET_FILE_MODE)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    secret = path.read_text(encoding="ascii").strip()
    if len(secret) < MIN_JWT_SECRET_LENGTH:
        raise ValueError(f"{path} holds a secret shorter than {MIN_JWT_SECRET_LENGTH} characters")
    return secret.encode()
