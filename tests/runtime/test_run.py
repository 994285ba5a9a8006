"""The real entry point: ``python run.py`` serves, logs JSON lines, and on
SIGTERM closes sockets with 1001, flushes counters and exits cleanly."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import signal
from pathlib import Path

import aiohttp
import asyncpg
import orjson

from config.settings import Settings
from tests.servers import env_for, free_port, start_run_py, wait_until_live


async def test_run_py_serves_and_stops_gracefully_on_sigterm(
    settings: Settings, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    port = free_port()
    env = env_for(settings, STATS_FLUSH_INTERVAL="3600", SHUTDOWN_GRACE_SECONDS="3")
    log_path = tmp_path / "server.log"
    proc = start_run_py(port, env, log_path)
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
