"""Helpers for the likes, matches and conversations tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from tests.auth_helpers import bearer, register
from tests.conftest import AppClient


@dataclass(frozen=True, slots=True)
class Person:
    user_id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.token)


async def person(client: AppClient) -> Person:
    body = await register(client)
    return Person(body["user_id"], body["access_token"])


async def people(client: AppClient, n: int) -> list[Person]:
    return list(await asyncio.gather(*(person(client) for _ in range(n))))


async def like(client: AppClient, who: Person, whom: Person | str, action: str = "like") -> tuple[int, dict[str, Any]]:
    target = whom if isinstance(whom, str) else whom.user_id
    resp = await client.post("/likes", json={"user_id": target, "action": action}, headers=who.auth)
    return resp.status, await resp.json()


async def matched_pair(client: AppClient) -> tuple[Person, Person, dict[str, Any]]:
    """Two people who liked each other; returns them and the match reply."""
    a, b = await people(client, 2)
    assert (await like(client, a, b))[1] == {"matched": False}
    status, body = await like(client, b, a)
    assert status == 200 and body["matched"], body
    return a, b, body
