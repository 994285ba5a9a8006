"""Chat delivery benchmark: messages per second one process delivers against
what PostgreSQL alone commits, and the delivery latency from sending a
message to reading it on the other member's socket.

    python -m bench.chat [--pairs 32] [--duration 10] [--warmup 2] [--rounds 2]

Spawns ``run.py`` (like ``bench.loadgen --spawn``; machine PostgreSQL and
Redis db 14 unless --database-url/--redis-url say otherwise, in a schema of
its own that is dropped afterwards), signs up ``2 x pairs`` users who like
each other, opens one ``WS /ws`` per user, then every pair runs a closed loop:
A sends ``send_message`` on its socket, B's socket receives the ``message``
event, A sends the next. Every message is durable (committed to PostgreSQL
with two event-log rows) before it is published. Loopback only; bounded by
``--duration`` and ``--max-messages``.

The PostgreSQL ceiling is measured in the same run, on the same schema and
conversations, alternating with the server (``--rounds`` of each): one bare
asyncpg connection per pair writes the same rows in a closed loop (one
message, the conversation's last message, both members' event counters and
event-log rows), one statement and one implicit transaction each, with no
HTTP, WebSocket or Redis in the way. The report gives both figures, their
ratio (server / ceiling) per round and as a median.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import secrets
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from bench.loadgen.common import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, log
from bench.loadgen.measure import (
    CpuWindow,
    LatencyStats,
    cpu_window,
    raise_nofile_limit,
    service_roots_for,
    take_cpu_snapshot,
)
from bench.loadgen.spawn import ServerOptions, SpawnedServer

PASSWORD = "bench-password-" + "x" * 12


# The rows of one sent message, written the cheapest way PostgreSQL allows:
# one statement, one implicit transaction, counters bumped in user-id order.
CEILING_SQL = """
    WITH msg AS (
        INSERT INTO messages (conversation_id, sender, client_id, text) VALUES ($1, $2, $3, $4)
        RETURNING id, created_at
    ), conv AS (
        UPDATE conversations c SET last_message_id = msg.id, last_activity_at = msg.created_at
        FROM msg WHERE c.id = $1
    ), counter AS (
        INSERT INTO user_event_counters AS k (user_id, last_event_id) VALUES ($5, 1), ($6, 1)
        ON CONFLICT (user_id) DO UPDATE SET last_event_id = k.last_event_id + 1
        RETURNING k.user_id, k.last_event_id
    )
    INSERT INTO user_events (user_id, event_id, type, payload)
    SELECT counter.user_id, counter.last_event_id, 'message',
           jsonb_build_object('conversation_id', $1::text, 'message', jsonb_build_object(
               'id', msg.id, 'conversation_id', $1::text, 'sender_id', $2::text, 'client_id', $3::text,
               'text', $4::text, 'created_at', msg.created_at))
    FROM counter, msg
    RETURNING event_id, created_at"""


@dataclass
class Pair:
    a_id: str
    a_token: str
    b_id: str
    b_token: str
    conversation_id: str
    latencies_ns: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Window:
    rate: float
    stats: LatencyStats
    server_us_per_msg: float
    other_cores: float


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
    return Pair(a_id, a_token, b_id, b_token, body["conversation_id"])


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
    tag: str,
) -> None:
    n = 0
    while time.monotonic() < stop_at and budget[0] > 0:
        budget[0] -= 1
        n += 1
        client_id = f"{tag}{n}"
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


async def ceiling_pair(
    conn: asyncpg.Connection, pair: Pair, measure_from: float, stop_at: float, budget: list[int], tag: str
) -> None:
    cid, a, b = uuid.UUID(pair.conversation_id), uuid.UUID(pair.a_id), uuid.UUID(pair.b_id)
    low, high = sorted((a, b))
    n = 0
    while time.monotonic() < stop_at and budget[0] > 0:
        budget[0] -= 1
        n += 1
        sent = time.perf_counter_ns()
        await conn.fetch(CEILING_SQL, cid, a, f"{tag}{n}", f"hello {n}", low, high)
        if time.monotonic() >= measure_from:
            pair.latencies_ns.append(time.perf_counter_ns() - sent)


async def timed_window(
    args: argparse.Namespace, server_pid: int, measuring_server: bool, loops: Callable[[float, float], list[Any]]
) -> tuple[CpuWindow, float]:
    """Run ``loops(measure_from, stop_at)`` (one coroutine per pair) through
    warm-up and the measured window; CPU is read around the measured part."""
    roots = service_roots_for([args.database_url, args.redis_url])
    start = time.monotonic()
    measure_from = start + args.warmup
    stop_at = measure_from + args.duration
    before = None

    async def snapshot_at_start() -> None:
        nonlocal before
        await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
        before = take_cpu_snapshot(server_pid, roots)

    snap = asyncio.create_task(snapshot_at_start())
    await asyncio.gather(*loops(measure_from, stop_at))
    await snap
    after = take_cpu_snapshot(server_pid, roots)
    assert before is not None
    return cpu_window(before, after, measuring_server), time.monotonic() - measure_from


def summarise(pairs: list[Pair], cpu: CpuWindow, elapsed: float) -> Window:
    samples = [ns for p in pairs for ns in p.latencies_ns]
    for p in pairs:
        p.latencies_ns.clear()
    per_msg = cpu.server_cpu_s * 1e6 / len(samples) if samples and cpu.server_cpu_s is not None else math.nan
    return Window(len(samples) / elapsed, LatencyStats.from_ns(samples), per_msg, cpu.other_busy_cores)


async def ceiling_round(args: argparse.Namespace, schema: str, server_pid: int, pairs: list[Pair], tag: str) -> Window:
    conns = await asyncio.gather(
        *(asyncpg.connect(args.database_url, server_settings={"search_path": schema}) for _ in pairs)
    )
    try:
        budget = [args.max_messages]
        cpu, elapsed = await timed_window(
            args,
            server_pid,
            False,
            lambda m, s: [ceiling_pair(c, p, m, s, budget, tag) for c, p in zip(conns, pairs, strict=True)],
        )
    finally:
        await asyncio.gather(*(c.close() for c in conns))
    return summarise(pairs, cpu, elapsed)


async def server_round(
    args: argparse.Namespace,
    server_pid: int,
    pairs: list[Pair],
    sockets: list[tuple[aiohttp.ClientWebSocketResponse, aiohttp.ClientWebSocketResponse]],
    tag: str,
) -> Window:
    budget = [args.max_messages]
    cpu, elapsed = await timed_window(
        args,
        server_pid,
        True,
        lambda m, s: [run_pair(p, a, b, m, s, budget, tag) for p, (a, b) in zip(pairs, sockets, strict=True)],
    )
    return summarise(pairs, cpu, elapsed)


def print_report(args: argparse.Namespace, rounds: list[tuple[Window, Window]]) -> None:
    print(
        "| round | PostgreSQL ceiling msg/s | server msg/s | server / ceiling | "
        "p50 ms | p90 ms | p99 ms | max ms | ceiling p50 / p99 ms | server CPU µs/msg | other cores |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for i, (ceiling, server) in enumerate(rounds, 1):
        st, cs = server.stats, ceiling.stats
        print(
            f"| {i} | {ceiling.rate:.0f} | {server.rate:.0f} | {server.rate / ceiling.rate:.2f} | "
            f"{st.p50_ms:.2f} | {st.p90_ms:.2f} | {st.p99_ms:.2f} | {st.max_ms:.2f} | "
            f"{cs.p50_ms:.2f} / {cs.p99_ms:.2f} | {server.server_us_per_msg:.0f} | "
            f"{ceiling.other_cores:.2f} / {server.other_cores:.2f} |"
        )
    ratios = [s.rate / c.rate for c, s in rounds]
    server_rate = statistics.median(s.rate for _, s in rounds)
    ceiling_rate = statistics.median(c.rate for c, _ in rounds)
    p50 = statistics.median(s.stats.p50_ms for _, s in rounds)
    p99 = statistics.median(s.stats.p99_ms for _, s in rounds)
    print(
        f"\n{args.pairs} pairs: median server / PostgreSQL ceiling = **{statistics.median(ratios):.2f}** "
        f"(server {server_rate:.0f} msg/s, ceiling {ceiling_rate:.0f} msg/s); "
        f"send-to-receive p50 {p50:.2f} ms, p99 {p99:.2f} ms (medians over {len(rounds)} rounds)"
    )


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
            sockets = list(zip(a_socks, b_socks, strict=True))
            log(
                f"{len(pairs)} pairs ready; {args.rounds} rounds of PostgreSQL ceiling then server, "
                f"each {args.warmup}s warm-up + {args.duration}s measured"
            )
            rounds = []
            for r in range(args.rounds):
                ceiling = await ceiling_round(args, schema, server.pid, pairs, f"c{r}-")
                served = await server_round(args, server.pid, pairs, sockets, f"s{r}-")
                log(f"round {r + 1}: ceiling {ceiling.rate:.0f} msg/s, server {served.rate:.0f} msg/s")
                rounds.append((ceiling, served))
            for ws in (*a_socks, *b_socks):
                await ws.close()
        print_report(args, rounds)
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
    parser.add_argument("--rounds", type=int, default=2, help="ceiling/server windows, alternating")
    parser.add_argument("--max-messages", type=int, default=200_000)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
