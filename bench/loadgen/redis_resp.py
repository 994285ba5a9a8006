"""A tiny RESP client for the few Redis commands the benches need (FLUSHDB before a
spawn, INFO memory), so the load generator does not depend on redis-py's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from urllib.parse import urlsplit

from bench.loadgen.common import BenchError, check_loopback, log


def _resp_command(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


async def _resp_reply(reader: asyncio.StreamReader) -> bytes:
    """One simple-string/integer/bulk reply; errors raise BenchError."""
    line = await asyncio.wait_for(reader.readline(), 5)
    kind, rest = line[:1], line[1:].rstrip(b"\r\n")
    if kind in (b"+", b":"):
        return rest
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return b""
        data = await asyncio.wait_for(reader.readexactly(size + 2), 5)
        return data[:-2]
    raise BenchError(f"unexpected redis reply {line[:200]!r}")


async def redis_commands(url: str, *commands: Sequence[str]) -> list[bytes]:
    """Run commands on the Redis db named by URL (tiny RESP client, loopback only)."""
    parts = urlsplit(url)
    check_loopback(f"http://{parts.hostname or '127.0.0.1'}/")
    db = (parts.path or "/0").lstrip("/") or "0"
    prelude: list[Sequence[str]] = []
    if parts.password:
        prelude.append(["AUTH", parts.username, parts.password] if parts.username else ["AUTH", parts.password])
    prelude.append(["SELECT", db])
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(parts.hostname or "127.0.0.1", parts.port or 6379), 5
    )
    try:
        writer.write(b"".join(_resp_command(*c) for c in (*prelude, *commands)))
        await writer.drain()
        replies = [await _resp_reply(reader) for _ in (*prelude, *commands)]
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return replies[len(prelude) :]


async def flush_redis(url: str) -> None:
    await redis_commands(url, ["FLUSHDB"])
    log(f"flushed redis {url}")


async def redis_used_memory(url: str | None) -> int | None:
    """``used_memory`` (bytes) of the whole Redis instance, or None when unknown."""
    if not url:
        return None
    try:
        (info,) = await redis_commands(url, ["INFO", "memory"])
    except (OSError, TimeoutError, BenchError, ValueError):
        return None
    for line in info.decode(errors="replace").splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":", 1)[1])
    return None
