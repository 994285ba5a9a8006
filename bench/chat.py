"""Chat delivery benchmark: messages per second one process delivers, and the
delivery latency from sending a message to reading it on the other member's
socket.

    python -m bench.chat [--pairs 32] [--duration 10] [--warmup 2]

Spawns ``run.py`` (like ``bench.loadgen --spawn``; machine PostgreSQL and
Redis db 14 unless --database-url/--redis-url say otherwise, in a schema of
its own that is dropped afterwards), signs up ``2 x pairs`` users who like
each other, opens one ``WS /ws`` per user, then every pair runs a closed loop:
A sends ``send_message`` on its socket, B's socket receives the ``message``
event, A sends the next. Every message is durable (committed to PostgreSQL
with two event-log rows) before it is published. Loopback only; bounded by
``--duration`` and ``--max-messages``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from bench.loadgen import (
    LatencyStats,
    ServerOptions,
    SpawnedServer,
    cpu_window,
    log,
    raise_nofile_limit,
    service_roots_for,
    take_cpu_snapshot,
)

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
PASSWORD = "bench-password-" + "x" * 12


@dataclass
class Pair:
    a_token: str
    b_token: str
    conversation_id: str
    latencies_ns: list[int] = field(default_factory=list)


async def _json(resp: aiohttp.ClientResponse) -> Any:
    body = await resp.read()
    if resp.status >= 400:
        raise RuntimeError(f"{resp.method} {resp.url.path}: {resp.status} {body[:200]!r}")
    return orjson.loads(body)


async def sign_up(http: aiohttp.ClientSession, base: str) -> tuple[str, str]:
    email = f"bench_{secrets.token_hex(8)}@example.com"
    async with http.post(f"{base}/auth/register", json={"email": email, "password": PASSWORD}) as resp:
        body = await _json(resp)
    return body["user_id"], body["access_token"]


async def make_pair(http: aiohttp.ClientSession, base: str) -> Pair:
    (a_id, a_token), (b_id, b_token) = await asyncio.gather(sign_up(http, base), sign_up(http, base))
    async with http.post(f"{base}/likes", json={"user_id": b_id, "action": "like"}, headers=_auth(a_token)) as r:
        await _json(r)
    async with http.post(f"{base}/likes", json={"user_id": a_id, "action": "like"}, headers=_auth(b_token)) as r:
        body = await _json(r)
    return Pair(a_token, b_token, body["conversation_id"])


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def open_socket(http: aiohttp.ClientSession, base: str, token: str) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(f"{base.replace('http', 'ws', 1)}/ws", headers=_auth(token))
    await ws.send_bytes(orjson.dumps({"type": "resume", "id": "r", "last_event_id": None}))
    while True:
        data = orjson.loads((await ws.receive(timeout=10)).data)
        if data.get("type") == "result" and data.get("id") == "r":
            return ws


async def run_pair(
    pair: Pair,
    a: aiohttp.ClientWebSocketResponse,
    b: aiohttp.ClientWebSocketResponse,
    measure_from: float,
    stop_at: float,
    budget: list[int],
) -> None:
    n = 0
    while time.monotonic() < stop_at and budget[0] > 0:
        budget[0] -= 1
        n += 1
        client_id = f"m{n}"
        sent = time.perf_counter_ns()
        await a.send_str(
            orjson.dumps(
                {
                    "type": "send_message",
                    "id": n,
                    "conversation_id": pair.conversation_id,
                    "client_id": client_id,
                    "text": f"hello {n}",
                }
            ).decode()
        )
        while True:  # B's copy of the message
            data = orjson.loads((await b.receive(timeout=10)).data)
            if data.get("type") == "message" and data["message"]["client_id"] == client_id:
                break
        if time.monotonic() >= measure_from:
            pair.latencies_ns.append(time.perf_counter_ns() - sent)
        with contextlib.suppress(TimeoutError):  # A's own copy and its command result
            for _ in range(2):
                await a.receive(timeout=5)


async def main(args: argparse.Namespace) -> None:
    raise_nofile_limit()
    schema = f"bench_chat_{secrets.token_hex(4)}"
    opts = ServerOptions(
        database_url=args.database_url,
        redis_url=args.redis_url,
        embedded=False,
        log_dir=Path("/tmp/proximity-bench"),
        ready_timeout_s=60,
        extra_env={
            "DB_SCHEMA": schema,
            "ACCESS_LOG": "0",
            "PASSWORD_HASH_PROFILE": "test",
            "RATE_LIMIT_AUTH_PER_MINUTE": "1000000",
            "RATE_LIMIT_API_PER_MINUTE": "1000000",
            "RATE_LIMIT_MESSAGES_PER_MINUTE": "1000000",
        },
    )
    server = SpawnedServer(opts)
    await server.start()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            pairs = list(await asyncio.gather(*(make_pair(http, server.url) for _ in range(args.pairs))))
            a_socks = await asyncio.gather(*(open_socket(http, server.url, p.a_token) for p in pairs))
            b_socks = await asyncio.gather(*(open_socket(http, server.url, p.b_token) for p in pairs))
            log(f"{len(pairs)} pairs ready; running {args.warmup}s warm-up + {args.duration}s measured")
            start = time.monotonic()
            measure_from = start + args.warmup
            stop_at = measure_from + args.duration
            budget = [args.max_messages]
            await asyncio.sleep(0)
            before = None

            async def snapshot_at_start() -> None:
                nonlocal before
                await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
                before = take_cpu_snapshot(server.pid, service_roots_for([args.database_url, args.redis_url]))

            snap = asyncio.create_task(snapshot_at_start())
            await asyncio.gather(
                *(
                    run_pair(p, a, b, measure_from, stop_at, budget)
                    for p, a, b in zip(pairs, a_socks, b_socks, strict=True)
                )
            )
            await snap
            after = take_cpu_snapshot(server.pid, service_roots_for([args.database_url, args.redis_url]))
            elapsed = time.monotonic() - measure_from
            for ws in (*a_socks, *b_socks):
                await ws.close()
        samples = [ns for p in pairs for ns in p.latencies_ns]
        stats = LatencyStats.from_ns(samples)
        assert before is not None
        cpu = cpu_window(before, after, True)
        rate = len(samples) / elapsed
        print("| pairs | messages/s delivered | p50 ms | p90 ms | p99 ms | max ms | server CPU µs/msg | other cores |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        per_msg = cpu.server_cpu_s * 1e6 / len(samples) if samples and cpu.server_cpu_s is not None else float("nan")
        print(
            f"| {args.pairs} | {rate:.0f} | {stats.p50_ms:.2f} | {stats.p90_ms:.2f} | {stats.p99_ms:.2f} | "
            f"{stats.max_ms:.2f} | {per_msg:.0f} | {cpu.other_busy_cores:.2f} |"
        )
    finally:
        await server.stop()
        conn = await asyncpg.connect(args.database_url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--max-messages", type=int, default=200_000)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
