"""Access-token verification and its per-process cache of verified tokens."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest

from proximity_server.features.tokens import AccessTokens, InvalidToken

SECRET = b"s" * 48
ISSUER, AUDIENCE = "proximity-test", "proximity-api"
TTL = 900


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token that reached pyjwt (i.e. was not answered from the cache)."""
    seen: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return seen


def make(clock: Clock, cache_size: int = 8, audience: str = AUDIENCE, secret: bytes = SECRET) -> AccessTokens:
    return AccessTokens(secret, ISSUER, audience, TTL, cache_size=cache_size, clock=clock)


def issue(tokens: AccessTokens, at: float) -> str:
    # pyjwt checks exp and iat against the real clock: issue relative to it.
    return tokens.issue(str(uuid.uuid4()), at).token


def test_a_verified_token_is_answered_from_the_cache(decodes: list[str]) -> None:
    clock = Clock(time.time())
    tokens = make(clock)
    token = issue(tokens, clock.now)
    first = tokens.verify(token)
    assert tokens.verify(token) == first
    assert decodes == [token]
    assert tokens.cached_tokens == 1


def test_a_cached_token_is_refused_once_it_expires(decodes: list[str]) -> None:
    clock = Clock(time.time())
    tokens = make(clock)
    token = issue(tokens, clock.now)
    tokens.verify(token)
    clock.now = int(clock.now) + TTL - 0.001
    tokens.verify(token)  # still valid a moment before exp
    clock.now = int(clock.now) + 1  # exp reached: pyjwt refuses from exp on, so does the cache
    with pytest.raises(InvalidToken):
        tokens.verify(token)
    assert tokens.cached_tokens == 0
    assert decodes == [token]


def test_the_cache_is_bounded_and_drops_the_least_recently_used(decodes: list[str]) -> None:
    clock = Clock(time.time())
    tokens = make(clock, cache_size=3)
    issued = [issue(tokens, clock.now) for _ in range(4)]
    for token in issued[:3]:
        tokens.verify(token)
    tokens.verify(issued[0])  # now the most recently used
    tokens.verify(issued[3])  # evicts issued[1]
    assert tokens.cached_tokens == 3
    decodes.clear()
    tokens.verify(issued[0])
    tokens.verify(issued[2])
    assert decodes == []
    tokens.verify(issued[1])
    assert decodes == [issued[1]]
    assert tokens.cached_tokens == 3


def test_tampered_forged_and_foreign_tokens_are_never_cached() -> None:
    clock = Clock(time.time())
    tokens = make(clock)
    good = issue(tokens, clock.now)
    tokens.verify(good)
    header, payload, signature = good.split(".")
    tampered = f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    forged = issue(make(clock, secret=b"x" * 48), clock.now)
    foreign = issue(make(clock, audience="someone-else"), clock.now)
    expired = issue(tokens, clock.now - 2 * TTL)
    for bad in (tampered, forged, foreign, expired, "not.a.jwt"):
        for _ in range(2):
            with pytest.raises(InvalidToken):
                tokens.verify(bad)
    assert tokens.cached_tokens == 1
