"""The proximity hot path: ``livez`` (bare-handler baseline), ``session``
(``POST /session``), ``match`` (``POST /match`` over a registered pool, alternating
with livez windows) and ``rotate`` (``POST /session/rotate`` over a pool, likewise)."""

from __future__ import annotations

import random
import time
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson

from bench.loadgen.client import JSON_HEADERS, Session, TokenFactory, bearer, random_interests, register_many
from bench.loadgen.common import log
from bench.loadgen.measure import PhaseResult, RequestFn, run_load
from bench.loadgen.scenarios.base import RunConfig, summarize_phases, versus_livez


def livez_request() -> RequestFn:
    async def req(http: aiohttp.ClientSession, _wid: int) -> str | None:
        async with http.get("/livez") as resp:
            await resp.read()
            return None if resp.status == 200 else f"http_{resp.status}"

    return req


def session_request(rng: random.Random) -> RequestFn:
    tokens = TokenFactory("bs")

    async def req(http: aiohttp.ClientSession, _wid: int) -> str | None:
        body = orjson.dumps({"ble_token": tokens(), "interests": random_interests(rng)})
        async with http.post("/session", data=body, headers=JSON_HEADERS) as resp:
            await resp.read()
            return None if resp.status == 201 else f"http_{resp.status}"

    return req


def match_request(pool: Sequence[Session], rng: random.Random, tally: Counter[str]) -> RequestFn:
    n = len(pool)
    headers = [bearer(s.session_id) for s in pool]

    async def req(http: aiohttp.ClientSession, _wid: int) -> str | None:
        a = rng.randrange(n)
        b = rng.randrange(n - 1)
        b += b >= a
        body = orjson.dumps({"own_token": pool[a].token, "detected_token": pool[b].token})
        async with http.post("/match", data=body, headers=headers[a]) as resp:
            raw = await resp.read()
            if resp.status != 200:
                return f"http_{resp.status}"
        data = orjson.loads(raw)
        tally["responses"] += 1
        tally["match_true"] += bool(data.get("match"))
        tally["nudge_sent"] += bool(data.get("nudge_sent"))
        return None

    return req


async def scenario_livez(cfg: RunConfig) -> dict[str, Any]:
    phases = [await run_load("livez", cfg.load(32), livez_request()) for _ in range(cfg.repeat)]
    return {"phases": phases, "summary": summarize_phases(phases)}


async def scenario_session(cfg: RunConfig) -> dict[str, Any]:
    rng = random.Random(cfg.seed)
    phases = [await run_load("session", cfg.load(32), session_request(rng)) for _ in range(cfg.repeat)]
    return {"phases": phases, "summary": summarize_phases(phases)}


async def create_pool(cfg: RunConfig, size: int, tag: str, rng: random.Random) -> list[Session]:
    tokens = TokenFactory(tag)
    specs = [(tokens(), random_interests(rng)) for _ in range(size)]
    t0 = time.perf_counter()
    pool = await register_many(cfg.base_url, specs, concurrency=64)
    log(f"registered {len(pool)} sessions in {time.perf_counter() - t0:.1f}s")
    return pool


async def scenario_match(cfg: RunConfig) -> dict[str, Any]:
    """livez and match windows alternate on the same server; medians and ratios."""
    rng = random.Random(cfg.seed)
    pool = await create_pool(cfg, cfg.pool, "bm", rng)
    livez: list[PhaseResult] = []
    match: list[PhaseResult] = []
    for r in range(cfg.repeat):
        log(f"match scenario round {r + 1}/{cfg.repeat}")
        livez.append(await run_load("livez", cfg.load(32), livez_request()))
        tally: Counter[str] = Counter()
        window = await run_load("match", cfg.load(32), match_request(pool, rng, tally), tally)
        match.append(window)
        if window.errors.get("http_401", 0) > window.requests_ok:
            log(
                "WARNING: most /match answers were 401, i.e. the pool's sessions are gone: was the "
                "server's Redis db flushed by someone else? Use a --redis-url db nobody else uses."
            )
    summary = {"pool_sessions": len(pool), **versus_livez("match", livez, match)}
    return {"livez_phases": livez, "match_phases": match, "summary": summary}


def rotate_request(pool: Sequence[Session]) -> RequestFn:
    """Each request rotates an idle session of the pool to a fresh token (no session twice at once)."""
    tokens = TokenFactory("br")
    idle = deque((s.token, s.session_id) for s in pool)

    async def req(http: aiohttp.ClientSession, _wid: int) -> str | None:
        token, secret = idle.popleft()
        new = tokens()
        body = orjson.dumps({"own_token": token, "new_token": new})
        try:
            async with http.post("/session/rotate", data=body, headers=bearer(secret)) as resp:
                await resp.read()
                ok = resp.status == 200
                status = resp.status
        except BaseException:
            idle.append((token, secret))
            raise
        idle.append((new if ok else token, secret))
        return None if ok else f"http_{status}"

    return req


async def scenario_rotate(cfg: RunConfig) -> dict[str, Any]:
    """livez and rotate windows alternate on the same server; medians and ratios."""
    rng = random.Random(cfg.seed)
    pool = await create_pool(cfg, cfg.pool, "bo", rng)
    rotate = rotate_request(pool)
    livez: list[PhaseResult] = []
    rotations: list[PhaseResult] = []
    for r in range(cfg.repeat):
        log(f"rotate scenario round {r + 1}/{cfg.repeat}")
        livez.append(await run_load("livez", cfg.load(32), livez_request()))
        rotations.append(await run_load("rotate", cfg.load(32), rotate))
    summary = {"pool_sessions": len(pool), **versus_livez("rotate", livez, rotations)}
    return {"livez_phases": livez, "rotate_phases": rotations, "summary": summary}
