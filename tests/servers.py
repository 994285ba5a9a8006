"""Running the real entry point (``python run.py``) from tests: free ports,
the environment that points it at a test's schema and Redis prefix, start-up
and the wait for ``/livez``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from config.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
LIVE_WAIT_STEPS = 100  # x 0.1 s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def run_py_env(*, database_url: str, redis_url: str, redis_prefix: str, db_schema: str, **extra: str) -> dict[str, str]:
    """This machine's environment plus where the server keeps its data, and ``extra``."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": redis_prefix,
        "DB_SCHEMA": db_schema,
        **extra,
    }


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """``run_py_env`` for the test's own settings (its schema and Redis prefix, its kind of Redis)."""
    if settings.redis_cluster:
        extra = {"REDIS_CLUSTER_URL": settings.redis_url or "", **extra}
    return run_py_env(
        database_url=settings.database_url or "",
        redis_url=settings.redis_url or "",
        redis_prefix=settings.redis_prefix,
        db_schema=settings.db_schema,
        **extra,
    )


def start_run_py(port: int, env: dict[str, str], log_path: Path, *args: str) -> subprocess.Popen[bytes]:
    """``python run.py --port PORT *args`` from the repo root, its log lines in ``log_path``."""
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "run.py", "--port", str(port), *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )


async def wait_until_live(base: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(LIVE_WAIT_STEPS):
            assert proc.poll() is None, "server exited during start-up"
            try:
                async with http.get(f"{base}/livez") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("server did not come up")


def read_log(path: Path) -> list[dict[str, Any]]:
    """The JSON log lines written so far (a line still being written is skipped)."""
    lines = []
    for raw in path.read_bytes().splitlines():
        if raw.strip():
            with contextlib.suppress(orjson.JSONDecodeError):
                lines.append(orjson.loads(raw))
    return lines


async def wait_for_log(
    path: Path, match: Callable[[dict[str, Any]], bool], *, count: int = 1, within: float = 10.0
) -> list[dict[str, Any]]:
    """Wait until ``count`` log lines satisfy ``match``; return them."""
    deadline = time.monotonic() + within
    while True:
        found = [line for line in read_log(path) if match(line)]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"expected {count} matching log line(s), found {len(found)}"
        await asyncio.sleep(0.02)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc`` if a test left it running."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
