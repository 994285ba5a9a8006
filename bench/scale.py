"""Nudges delivered per second by ``run.py --workers 1`` vs ``--workers 2``.

Usage (from the repository root, with PostgreSQL and Redis running)::

    python -m bench.scale [--sockets 2000] [--concurrency 64] [--duration 5] [--workers 1 2]

For each worker count, a fresh ``python run.py --workers N`` is spawned on a
free loopback port (its own Redis prefix and PostgreSQL schema, dropped
afterwards); ``--sockets`` sessions that share an interest are registered and
each holds a WebSocket open (the kernel spreads those connections over the
workers). Then ``--concurrency`` clients post ``POST /match`` for fresh pairs
for ``--duration`` seconds, and every nudge frame read on any socket is
counted, for up to two more seconds after the last request. Reported:
matches/s and nudge events/s delivered. The load generator is one Python
process on the same machine, so on a small machine it competes with the
server for CPU: compare the two rows, not the absolute numbers. (On the
2-core development machine, shared with other work, both rows landed between
about 1,500 and 2,800 matches/s, i.e. 3,000 to 5,500 nudges/s, in either
order: the client and the machine, not the worker count, were the limit.)

Client helpers come from ``bench.loadgen``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import orjson
import redis.asyncio as aioredis

from bench.loadgen import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    HTTP_TIMEOUT,
    JSON_HEADERS,
    REPO_ROOT,
    TokenFactory,
    WsPeer,
    bearer,
    close_many,
    free_port,
    log,
    open_many,
    register_many,
)

READY_TIMEOUT_S = 30.0
DRAIN_S = 2.0


@dataclass(slots=True)
class ScaleResult:
    workers: int
    sockets: int
    matches: int
    nudges: int
    seconds: float
    errors: int

    @property
    def matches_per_s(self) -> float:
        return self.matches / self.seconds if self.seconds else 0.0

    @property
    def nudges_per_s(self) -> float:
        return self.nudges / self.seconds if self.seconds else 0.0


async def _spawn(workers: int, env: dict[str, str], log_path: Path) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    with log_path.open("wb") as logf:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "run.py",
            "--workers",
            str(workers),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            cwd=REPO_ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=logf,
            stderr=asyncio.subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"server exited with {proc.returncode}; see {log_path}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                async with http.get(f"{url}/livez") as resp:
                    if resp.status == 200:
                        return proc, url
            await asyncio.sleep(0.1)
    proc.kill()
    await proc.wait()
    raise RuntimeError(f"server did not come up; see {log_path}")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 25)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _drive(url: str, sessions_: list[tuple[str, str]], concurrency: int, duration: float) -> tuple[int, int]:
    """``concurrency`` clients post matches over distinct pairs for ``duration`` seconds."""
    n = len(sessions_)
    pairs = ((i, (i + step) % n) for step in range(1, n) for i in range(n))
    matches = errors = 0
    deadline = time.monotonic() + duration
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, connector=connector, timeout=HTTP_TIMEOUT) as http:

        async def client() -> None:
            nonlocal matches, errors
            while time.monotonic() < deadline:
                try:
                    a, b = next(pairs)
                except StopIteration:
                    return
                (own, secret), (other, _) = sessions_[a], sessions_[b]
                body = orjson.dumps({"own_token": own, "detected_token": other})
                try:
                    async with http.post("/match", data=body, headers={**JSON_HEADERS, **bearer(secret)}) as resp:
                        await resp.read()
                        if resp.status == 200:
                            matches += 1
                        else:
                            errors += 1
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return matches, errors


def _nudges(peers: list[WsPeer]) -> int:
    return sum(p.frames for p in peers)


async def run_one(workers: int, args: argparse.Namespace, log_dir: Path) -> ScaleResult:
    tag = secrets.token_hex(4)
    schema, prefix = f"bench_scale_{tag}", f"bs:{tag}:"
    env = {
        **os.environ,
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "DB_SCHEMA": schema,
        "REDIS_PREFIX": prefix,
        "ACCESS_LOG": "0",
        "SESSION_TTL_SECONDS": "3600",
        "STATS_FLUSH_INTERVAL": "3600",
        "RATE_LIMIT_API_PER_MINUTE": "1000000",
        "SHUTDOWN_GRACE_SECONDS": "5",
        "WS_HEARTBEAT_SECONDS": "300",
    }
    proc, url = await _spawn(workers, env, log_dir / f"scale-w{workers}.log")
    peers: list[WsPeer] = []
    try:
        tokens = TokenFactory("sc")
        registered = await register_many(url, [(tokens(), ["devops", "hardstyle"]) for _ in range(args.sockets)])
        async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=0)) as ws_http:
            peers, open_errors = await open_many(ws_http, registered, 200, False)
            if open_errors:
                log(f"websocket open errors: {dict(open_errors)}")
            await asyncio.sleep(0.5)
            before = _nudges(peers)
            t0 = time.monotonic()
            matches, errors = await _drive(
                url, [(s.token, s.session_id) for s in registered], args.concurrency, args.duration
            )
            sent_until = time.monotonic()
            # Let in-flight nudges arrive; stop as soon as the count settles.
            last, settle_deadline = -1, sent_until + DRAIN_S
            while time.monotonic() < settle_deadline:
                now = _nudges(peers)
                if now == last:
                    break
                last = now
                await asyncio.sleep(0.2)
            delivered = _nudges(peers) - before
            seconds = time.monotonic() - t0
            await close_many(peers)
    finally:
        await _stop(proc)
        await _drop(args, schema, prefix)
    return ScaleResult(workers, len(peers), matches, delivered, seconds, errors)


async def _drop(args: argparse.Namespace, schema: str, prefix: str) -> None:
    with contextlib.suppress(Exception):
        conn = await asyncpg.connect(args.database_url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
    client = aioredis.Redis.from_url(args.redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL)
    args = parser.parse_args(argv)
    log_dir = REPO_ROOT / ".data" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    results = [asyncio.run(run_one(w, args, log_dir)) for w in args.workers]
    print(f"\n{args.sockets} sockets, {args.concurrency} clients, {args.duration:.0f} s, {os.cpu_count()} CPUs")
    print("| workers | sockets | matches/s | nudges/s delivered | errors |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r.workers} | {r.sockets} | {r.matches_per_s:.0f} | {r.nudges_per_s:.0f} | {r.errors} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
