"""``idle_ws``: server RSS per authenticated idle WebSocket on a fresh server, then a
sample of the sockets must still receive a nudge."""

from __future__ import annotations

import asyncio
import random
import resource
import time
from collections import Counter
from typing import Any

import aiohttp
import orjson

from bench.loadgen.client import (
    HTTP_TIMEOUT,
    SHARED_INTERESTS,
    Session,
    TokenFactory,
    WsPeer,
    bearer,
    close_many,
    open_many,
    register_many,
)
from bench.loadgen.common import BenchError, log
from bench.loadgen.measure import max_open_files, rss_kb
from bench.loadgen.redis_resp import redis_used_memory
from bench.loadgen.scenarios.base import RunConfig
from bench.loadgen.spawn import SpawnedServer


async def scenario_idle_ws(cfg: RunConfig, server: SpawnedServer | None) -> dict[str, Any]:
    """RSS growth per idle authenticated WebSocket on a fresh server."""
    if server is None:
        raise BenchError("idle_ws needs a fresh server: run it with --spawn")
    pid, n = server.pid, cfg.sockets
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    server_nofile = max_open_files(pid)
    log(f"idle_ws: client RLIMIT_NOFILE={soft}/{hard}, server max open files={server_nofile}")
    if soft != resource.RLIM_INFINITY and soft < n + 500:
        raise BenchError(f"client RLIMIT_NOFILE {soft} too low for {n} sockets")
    if server_nofile is not None and 0 <= server_nofile < n + 100:
        log(f"WARNING: server fd limit {server_nofile} < {n} sockets; expect failures")
    rng = random.Random(cfg.seed)
    rss_start = rss_kb(pid)

    # Warm-up: exercise /livez, /session, /ws and /match code paths once.
    warm_tokens = TokenFactory("bw")
    warm = await register_many(cfg.base_url, [(warm_tokens(), list(SHARED_INTERESTS)) for _ in range(64)])
    async with aiohttp.ClientSession(
        cfg.base_url, connector=aiohttp.TCPConnector(limit=0), timeout=HTTP_TIMEOUT
    ) as http:
        for _ in range(200):
            async with http.get("/livez") as resp:
                await resp.read()
        peers, _ = await open_many(http, warm, 32, cfg.use_msgpack)
        for i in range(0, len(peers) - 1, 2):
            body = orjson.dumps(
                {
                    "own_token": peers[i].session.token,
                    "detected_token": peers[i + 1].session.token,
                }
            )
            async with http.post("/match", data=body, headers=bearer(peers[i].session.session_id)) as resp:
                await resp.read()
        await asyncio.sleep(0.5)
        await close_many(peers)
    await asyncio.sleep(1.0)
    rss_warm = rss_kb(pid)

    tokens = TokenFactory("bi")
    t0 = time.perf_counter()
    sessions = await register_many(
        cfg.base_url,
        [(tokens(), ["devops", "hiking"]) for _ in range(n)],
        concurrency=64,
        batch=1000,
    )
    register_s = time.perf_counter() - t0
    await asyncio.sleep(1.0)
    rss_sessions = rss_kb(pid)
    redis_url = server.opts.redis_url
    redis_before = await redis_used_memory(redis_url)
    log(f"idle_ws: {n} sessions registered in {register_s:.1f}s; RSS {rss_warm} -> {rss_sessions} KB")

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(cfg.base_url, connector=connector, timeout=HTTP_TIMEOUT) as http:
        t0 = time.perf_counter()
        peers, ws_errors = await open_many(http, sessions, cfg.ws_concurrency, cfg.use_msgpack)
        open_s = time.perf_counter() - t0
        log(f"idle_ws: opened {len(peers)}/{n} sockets in {open_s:.1f}s (errors: {dict(ws_errors) or 'none'})")
        await asyncio.sleep(cfg.settle_s)
        rss_after = rss_kb(pid)
        redis_after = await redis_used_memory(redis_url)
        alive = [p for p in peers if not p.closed]
        log(f"idle_ws: after {cfg.settle_s}s {len(alive)} sockets alive; RSS {rss_after} KB")

        # Prove a sample is alive: a fresh partner detects each sampled idle token.
        sample = rng.sample(alive, min(20, len(alive)))
        partners = await register_many(
            cfg.base_url,
            [(tokens(), ["devops", "running"]) for _ in sample],
            concurrency=20,
        )
        delivered = 0
        verify_errors: Counter[str] = Counter()

        async def verify(peer: WsPeer, partner: Session) -> None:
            nonlocal delivered
            body = orjson.dumps({"own_token": partner.token, "detected_token": peer.session.token})
            async with http.post("/match", data=body, headers=bearer(partner.session_id)) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    verify_errors[f"match_http_{resp.status}"] += 1
                    return
            if not orjson.loads(raw).get("nudge_sent"):
                verify_errors["nudge_sent_false"] += 1
            if await peer.wait_nudge(cfg.nudge_timeout_s) is not None:
                delivered += 1
            else:
                verify_errors["nudge_timeout"] += 1

        await asyncio.gather(*(verify(p, q) for p, q in zip(sample, partners, strict=True)))
        alive_end = sum(not p.closed for p in peers)
        log(f"idle_ws: nudge delivered to {delivered}/{len(sample)} sampled sockets; {alive_end} alive")
        t0 = time.perf_counter()
        await close_many(peers)
        close_s = time.perf_counter() - t0
    opened = len(peers)
    return {
        "sockets_requested": n,
        "sockets_opened": opened,
        "sockets_alive_after_settle": len(alive),
        "sockets_alive_at_end": alive_end,
        "ws_open_errors": dict(ws_errors),
        "register_s": register_s,
        "open_s": open_s,
        "close_s": close_s,
        "settle_s": cfg.settle_s,
        "rss_start_kb": rss_start,
        "rss_after_warmup_kb": rss_warm,
        "rss_after_sessions_kb": rss_sessions,
        "rss_after_sockets_kb": rss_after,
        "kb_per_socket": (rss_after - rss_sessions) / opened if opened else None,
        "kb_per_socket_incl_session": (rss_after - rss_warm) / opened if opened else None,
        "redis_used_memory_before_sockets": redis_before,
        "redis_used_memory_after_sockets": redis_after,
        "redis_bytes_per_socket": (
            (redis_after - redis_before) / opened
            if opened and redis_before is not None and redis_after is not None
            else None
        ),
        "nudge_sample": len(sample),
        "nudge_sample_delivered": delivered,
        "nudge_verify_errors": dict(verify_errors),
        "client_nofile": [soft, hard],
        "server_max_open_files": server_nofile,
        "msgpack": cfg.use_msgpack,
    }
