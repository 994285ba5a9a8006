"""``nudge``: push latency from ``POST /match`` being sent to the nudge frame being
read on the partner's WebSocket, at C concurrent clients."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson

from bench.loadgen.client import (
    HTTP_TIMEOUT,
    INTERESTS,
    SHARED_INTERESTS,
    TokenFactory,
    WsPeer,
    bearer,
    close_many,
    open_many,
    register_many,
)
from bench.loadgen.common import BenchError, log
from bench.loadgen.measure import LatencyStats
from bench.loadgen.scenarios.base import RunConfig


@dataclasses.dataclass(slots=True)
class Pair:
    a: WsPeer
    b: WsPeer


async def _prepare_pairs(
    cfg: RunConfig,
    ws_http: aiohttp.ClientSession,
    n: int,
    tokens: TokenFactory,
    rng: random.Random,
) -> tuple[list[Pair], Counter[str]]:
    specs: list[tuple[str, list[str]]] = []
    for _ in range(n):
        for _side in range(2):
            extra = rng.sample([i for i in INTERESTS if i not in SHARED_INTERESTS], 1)
            specs.append((tokens(), [*SHARED_INTERESTS, *extra]))
    sessions = await register_many(cfg.base_url, specs, concurrency=64)
    peers, errors = await open_many(ws_http, sessions, 64, cfg.use_msgpack)
    by_token = {p.session.token: p for p in peers}
    pairs: list[Pair] = []
    leftovers: list[WsPeer] = []
    for i in range(0, len(sessions), 2):
        pa, pb = by_token.get(sessions[i].token), by_token.get(sessions[i + 1].token)
        if pa is not None and pb is not None:
            pairs.append(Pair(pa, pb))
        else:
            leftovers += [p for p in (pa, pb) if p is not None]
    await close_many(leftovers)
    return pairs, errors


async def _nudge_once(
    http: aiohttp.ClientSession,
    pair: Pair,
    timeout_s: float,
    samples: dict[str, list[int]],
    errors: Counter[str],
) -> None:
    a, b = pair.a.session, pair.b.session
    body = orjson.dumps({"own_token": a.token, "detected_token": b.token})
    headers = bearer(a.session_id)
    t0 = time.perf_counter_ns()
    try:
        async with http.post("/match", data=body, headers=headers) as resp:
            raw = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        errors[type(exc).__name__] += 1
        return
    t_resp = time.perf_counter_ns()
    if status != 200:
        errors[f"match_http_{status}"] += 1
        return
    data = orjson.loads(raw)
    if not data.get("nudge_sent"):
        errors["nudge_sent_false"] += 1
        return
    got_b = await pair.b.wait_nudge(timeout_s)
    if got_b is None:
        errors["nudge_timeout_b"] += 1
        return
    t_b, frame = got_b
    samples["nudge_ns"].append(t_b - t0)
    samples["match_http_ns"].append(t_resp - t0)
    if not frame.get("shared_interests"):  # categories, e.g. ["music", "tech"]
        errors["frame_without_shared_interests"] += 1
    got_a = await pair.a.wait_nudge(min(timeout_s, 2.0))
    if got_a is None:
        errors["nudge_timeout_a"] += 1
    else:
        samples["nudge_a_ns"].append(got_a[0] - t0)


async def _nudge_client(
    http: aiohttp.ClientSession,
    pairs: Iterator[Pair],
    stop_at_ns: int,
    timeout_s: float,
    samples: dict[str, list[int]],
    errors: Counter[str],
) -> int:
    """One of C concurrent clients; the iterator is shared so each pair is used exactly once.
    Returns the number of pairs it used."""
    used = 0
    for pair in pairs:
        if time.perf_counter_ns() >= stop_at_ns:
            break
        used += 1
        await _nudge_once(http, pair, timeout_s, samples, errors)
    return used


async def scenario_nudge(cfg: RunConfig, concurrency: int | None = None) -> dict[str, Any]:
    """Push latency over fresh pairs; sockets are opened before each timed batch."""
    c = concurrency or cfg.connections or 8
    rng = random.Random(cfg.seed + c)
    tokens = TokenFactory(f"bn{c}")
    batch_size = max(c * 8, 64)
    samples: dict[str, list[int]] = {
        "nudge_ns": [],
        "match_http_ns": [],
        "nudge_a_ns": [],
    }
    errors: Counter[str] = Counter()
    setup_errors: Counter[str] = Counter()
    timed_ns = 0
    attempted = 0
    wall_deadline = time.monotonic() + max(120.0, cfg.duration_s * 20)
    ws_conn = aiohttp.TCPConnector(limit=0)
    api_conn = aiohttp.TCPConnector(limit=c)
    async with (
        aiohttp.ClientSession(cfg.base_url, connector=ws_conn, timeout=HTTP_TIMEOUT) as ws_http,
        aiohttp.ClientSession(cfg.base_url, connector=api_conn, timeout=HTTP_TIMEOUT) as api_http,
    ):
        warmup_left = min(max(c * 2, 16), cfg.count) if cfg.warmup_s > 0 else 0
        rounds = 0
        while attempted < cfg.count and timed_ns < cfg.duration_s * 1e9 and time.monotonic() < wall_deadline:
            rounds += 1
            warm = warmup_left > 0
            n = warmup_left if warm else min(batch_size, cfg.count - attempted)
            pairs, errs = await _prepare_pairs(cfg, ws_http, n, tokens, rng)
            setup_errors.update(errs)
            if not pairs:
                raise BenchError(f"could not prepare any nudge pair: {dict(setup_errors)}")
            it: Iterator[Pair] = iter(pairs)
            sink: dict[str, list[int]] = {k: [] for k in samples}
            sink_errors: Counter[str] = Counter()
            stop_at = time.perf_counter_ns() + int(cfg.duration_s * 1e9) - timed_ns
            t0 = time.perf_counter_ns()
            used = await asyncio.gather(
                *(_nudge_client(api_http, it, stop_at, cfg.nudge_timeout_s, sink, sink_errors) for _ in range(c))
            )
            elapsed = time.perf_counter_ns() - t0
            await close_many([p for pair in pairs for p in (pair.a, pair.b)])
            if warm:
                warmup_left = 0
                log(f"nudge C={c}: warm-up batch of {len(pairs)} pairs done ({dict(sink_errors) or 'no errors'})")
                continue
            timed_ns += elapsed
            attempted += sum(used)
            for k, v in sink.items():
                samples[k] += v
            errors.update(sink_errors)
    nudge = LatencyStats.from_ns(samples["nudge_ns"])
    result = {
        "concurrency": c,
        "msgpack": cfg.use_msgpack,
        "pairs_attempted": attempted,
        "batches": rounds,
        "timed_s": timed_ns / 1e9,
        "nudges_per_s": nudge.count / (timed_ns / 1e9) if timed_ns else None,
        "latency_b": nudge,
        "latency_a": LatencyStats.from_ns(samples["nudge_a_ns"]),
        "match_http": LatencyStats.from_ns(samples["match_http_ns"]),
        "errors": dict(errors),
        "setup_errors": dict(setup_errors),
    }
    log(
        f"nudge C={c}: n={nudge.count} p50={nudge.p50_ms:.2f}ms p90={nudge.p90_ms:.2f}ms "
        f"p99={nudge.p99_ms:.2f}ms max={nudge.max_ms:.2f}ms errors={dict(errors)}"
    )
    return result
