"""The real entry point: ``python run.py`` serves, logs JSON lines, and on
SIGTERM closes sockets with 1001, flushes counters and exits cleanly."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import asyncpg
import orjson

from config.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def wait_until_live(base: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            assert proc.poll() is None, "server exited during start-up"
            try:
                async with http.get(f"{base}/livez") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("server did not come up")


async def test_run_py_serves_and_stops_gracefully_on_sigterm(
    settings: Settings, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "REDIS_PREFIX": settings.redis_prefix,
        "DB_SCHEMA": settings.db_schema,
        "STATS_FLUSH_INTERVAL": "3600",
        "SHUTDOWN_GRACE_SECONDS": "3",
    }
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "run.py", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_until_live(base, proc)
        async with aiohttp.ClientSession() as http:
            token = "run_" + secrets.token_hex(6)
            async with http.post(f"{base}/session", json={"ble_token": token, "interests": ["devops"]}) as resp:
                assert resp.status == 201
                secret = (await resp.json())["session_id"]
            ws = await http.ws_connect(f"{base}/ws/{token}?session_id={secret}")
            proc.send_signal(signal.SIGTERM)
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 1001
        assert await asyncio.to_thread(proc.wait, 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [orjson.loads(line) for line in log_path.read_bytes().splitlines() if line.strip()]
    assert lines, "no log lines"
    assert any(line["msg"] == "final counter flush" for line in lines)
    requests = [line for line in lines if line["msg"] == "request"]
    assert requests and all(len(line["request_id"]) >= 8 for line in requests)
    assert not any(secret in str(line) for line in lines)  # no secret in the logs
    today = dt.datetime.now(dt.UTC).date()
    assert await pg.fetchval("SELECT total_sessions FROM daily_stats WHERE date = $1", today) == 1
