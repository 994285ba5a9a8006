"""Accounts: ``me`` — one account with a profile per client, ``GET /me`` windows
alternating with livez windows on the same server."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson

from bench.loadgen.client import HTTP_TIMEOUT, JSON_HEADERS, bearer
from bench.loadgen.common import BenchError, log
from bench.loadgen.measure import PhaseResult, RequestFn, run_load
from bench.loadgen.scenarios.base import RunConfig, versus_livez
from bench.loadgen.scenarios.proximity import livez_request

BENCH_PASSWORD = "bench-passphrase-not-in-any-list-7Qx"  # noqa: S105 (a throwaway bench account)

BENCH_PROFILE: dict[str, Any] = {
    "display_name": "Bench",
    "birthdate": "1990-05-17",
    "gender": "woman",
    "interested_in": ["man", "woman"],
    "bio": "load generator account",
    "interests": ["devops", "jazz", "hiking"],
    "location": {"lat": 52.52, "lon": 13.405},
}


async def create_account(http: aiohttp.ClientSession, email: str) -> dict[str, str]:
    """Registers an account with a full profile; returns its bearer headers."""
    body = orjson.dumps({"email": email, "password": BENCH_PASSWORD})
    async with http.post("/auth/register", data=body, headers=JSON_HEADERS) as resp:
        raw = await resp.read()
        if resp.status != 201:
            raise BenchError(f"POST /auth/register: HTTP {resp.status} {raw[:200]!r} (rate limits raised?)")
    headers = bearer(str(orjson.loads(raw)["access_token"]))
    async with http.put("/me/profile", data=orjson.dumps(BENCH_PROFILE), headers=headers) as resp:
        raw = await resp.read()
        if resp.status != 200:
            raise BenchError(f"PUT /me/profile: HTTP {resp.status} {raw[:200]!r}")
    return headers


async def create_accounts(base_url: str, count: int, concurrency: int = 8) -> list[dict[str, str]]:
    tag = secrets.token_hex(4)
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(base_url, timeout=HTTP_TIMEOUT) as http:

        async def one(i: int) -> dict[str, str]:
            async with gate:
                return await create_account(http, f"bench-{tag}-{i}@example.com")

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def me_request(accounts: Sequence[dict[str, str]]) -> RequestFn:
    """Client ``wid`` reads ``/me`` as account ``wid`` (modulo the accounts)."""

    async def req(http: aiohttp.ClientSession, wid: int) -> str | None:
        async with http.get("/me", headers=accounts[wid % len(accounts)]) as resp:
            await resp.read()
            return None if resp.status == 200 else f"http_{resp.status}"

    return req


async def scenario_me(cfg: RunConfig) -> dict[str, Any]:
    """livez and ``GET /me`` windows alternate on the same server; medians and ratios."""
    load = cfg.load(32)
    t0 = time.perf_counter()
    accounts = await create_accounts(cfg.base_url, load.connections)
    log(f"registered {len(accounts)} accounts with profiles in {time.perf_counter() - t0:.1f}s")
    livez: list[PhaseResult] = []
    me: list[PhaseResult] = []
    for r in range(cfg.repeat):
        log(f"me scenario round {r + 1}/{cfg.repeat}")
        livez.append(await run_load("livez", load, livez_request()))
        window = await run_load("me", load, me_request(accounts))
        me.append(window)
        if window.errors.get("http_429", 0):
            log("WARNING: /me answered 429: run the server with RATE_LIMIT_API_PER_MINUTE raised")
    summary = {"accounts": len(accounts), **versus_livez("me", livez, me)}
    return {"livez_phases": livez, "me_phases": me, "summary": summary}
