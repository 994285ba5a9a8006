"""Rate limits (fixed one-minute windows in Redis) and the client address.

``/auth/*`` calls count per client IP and, where the body names one, per
email; authenticated API calls count per user (inside the access check, see
``auth.authenticated_user``). Over the limit is 429 with ``Retry-After``.

The client IP is the peer address. ``X-Forwarded-For`` is believed only when
the peer is a trusted proxy; then the nearest address in it that is not a
trusted proxy is the client.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from proximity_server.features.errors import RateLimited
from store.rate_limit import RateLimitStore
from store.redis_keys import Keys

WINDOW_MS: Final = 60_000
AUTH_IP_SCOPE: Final = "auth-ip"
AUTH_EMAIL_SCOPE: Final = "auth-email"
API_USER_SCOPE: Final = "api-user"
REAUTH_USER_SCOPE: Final = "reauth-user"  # password re-checks for erasure and export
FORWARDED_FOR_HEADER: Final = "X-Forwarded-For"
UNKNOWN_CLIENT: Final = "unknown"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Window:
    index: int
    retry_after_seconds: int


def current_window(now_ms: int) -> Window:
    index, elapsed = divmod(now_ms, WINDOW_MS)
    return Window(index, max(1, math.ceil((WINDOW_MS - elapsed) / 1000)))


def raise_if_over(hits: int, limit: int, window: Window) -> None:
    if hits > limit:
        raise RateLimited(
            f"too many requests; retry in {window.retry_after_seconds} s",
            headers={"Retry-After": str(window.retry_after_seconds)},
        )


def email_digest(email: str) -> str:
    """Counters are keyed by a digest, so Redis never holds an address."""
    return hashlib.sha256(email.encode()).hexdigest()[:32]


class RateLimiter:
    def __init__(self, store: RateLimitStore, keys: Keys, auth_per_minute: int, api_per_minute: int) -> None:
        self._store = store
        self._keys = keys
        self.auth_per_minute = auth_per_minute
        self.api_per_minute = api_per_minute

    async def check_auth_ip(self, client_ip: str, now_ms: int) -> None:
        await self._check(AUTH_IP_SCOPE, client_ip, self.auth_per_minute, now_ms)

    async def check_auth_email(self, email: str, now_ms: int) -> None:
        await self._check(AUTH_EMAIL_SCOPE, email_digest(email), self.auth_per_minute, now_ms)

    async def check_reauth_user(self, user_id: str, now_ms: int) -> None:
        """Password re-checks of a signed-in user count like logins (per account)."""
        await self._check(REAUTH_USER_SCOPE, user_id, self.auth_per_minute, now_ms)

    async def _check(self, scope: str, subject: str, limit: int, now_ms: int) -> None:
        window = current_window(now_ms)
        (hits,) = await self._store.hit([self._keys.rate_limit(scope, subject, window.index)], WINDOW_MS)
        raise_if_over(hits, limit, window)

    def api_bucket(self, user_id: str, window: Window) -> str:
        return self._keys.rate_limit(API_USER_SCOPE, user_id, window.index)


class TrustedProxies:
    def __init__(self, networks: Iterable[str]) -> None:
        self._networks: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in networks)

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._networks)

    def client_ip(self, peer: str | None, forwarded_for: str | None) -> str:
        if not peer:
            return UNKNOWN_CLIENT
        if not forwarded_for or not self._networks or not self.trusts(peer):
            return peer
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        client = peer
        for hop in reversed(hops):
            try:
                client = str(ipaddress.ip_address(hop))
            except ValueError:
                return client  # garbage from beyond the proxies: stop at the last good hop
            if not self.trusts(client):
                return client
        return client
