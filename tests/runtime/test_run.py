"""The real entry point: ``python run.py`` serves, logs JSON lines, and on
SIGTERM closes sockets with 1001, flushes counters and exits cleanly."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import pty
import secrets
import signal
import subprocess
import sys
import threading
from pathlib import Path

import aiohttp
import asyncpg
import orjson

from config.settings import Settings
from proximity_server.runtime.serve import where_to_go
from tests.servers import ROOT, env_for, free_port, start_run_py, wait_until_live


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


def test_where_to_go() -> None:
    assert where_to_go("0.0.0.0", 8080, ["/", "/docs"]) == {  # noqa: S104
        "web_app": "http://127.0.0.1:8080/",
        "api_reference": "http://127.0.0.1:8080/docs",
    }
    with_admin = where_to_go("::1", 9000, ["/", "/admin/", "/docs"])
    assert with_admin["admin_console"] == "http://[::1]:9000/admin/"
    assert "admin_console" not in where_to_go("127.0.0.1", 1, ["/administrators"])


async def _start_and_stop(settings: Settings, tmp_path: Path, **env: str) -> tuple[int, str]:
    port = free_port()
    log_path = tmp_path / "server.log"
    proc = start_run_py(port, env_for(settings, **env), log_path)
    try:
        await wait_until_live(f"http://127.0.0.1:{port}", proc)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return port, log_path.read_text()


async def test_run_py_says_where_to_go_in_json_by_default(settings: Settings, tmp_path: Path) -> None:
    port, text = await _start_and_stop(settings, tmp_path)
    lines = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    (ready,) = [line for line in lines if line["msg"].startswith("ready: ")]
    assert ready["web_app"] == f"http://127.0.0.1:{port}/"
    assert ready["api_reference"] == f"http://127.0.0.1:{port}/docs"
    assert ready["admin_console"] == f"http://127.0.0.1:{port}/admin/"  # the admin console is routed


async def test_log_format_text_gives_readable_lines(settings: Settings, tmp_path: Path) -> None:
    port, text = await _start_and_stop(settings, tmp_path, LOG_FORMAT="text")
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines and not any(line.startswith("{") for line in lines)
    assert any(
        f"ready: web app http://127.0.0.1:{port}/, admin console http://127.0.0.1:{port}/admin/, "
        f"API reference http://127.0.0.1:{port}/docs" in line
        for line in lines
    )
    assert any(" INFO  proximity_server.run listening " in line for line in lines)


def _drain_pty(controller: int, into: bytearray) -> None:
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal side closed
            return
        if not chunk:
            return
        into.extend(chunk)


async def test_a_terminal_gets_text_and_log_format_json_overrides(settings: Settings, tmp_path: Path) -> None:
    for extra, want_json in (({}, False), ({"LOG_FORMAT": "json"}, True)):
        port = free_port()
        controller, terminal = pty.openpty()
        output = bytearray()
        reader = threading.Thread(target=_drain_pty, args=(controller, output), daemon=True)
        proc = subprocess.Popen(
            [sys.executable, "run.py", "--port", str(port)],
            cwd=ROOT,
            env=env_for(settings, **extra),
            stdout=subprocess.DEVNULL,
            stderr=terminal,
        )
        os.close(terminal)
        reader.start()
        try:
            await wait_until_live(f"http://127.0.0.1:{port}", proc)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 10) == 0
            await asyncio.to_thread(reader.join, 5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            os.close(controller)
        text = output.decode(errors="replace")
        ready = [line for line in text.splitlines() if "ready: " in line]
        assert ready, text[-1000:]
        assert ready[0].startswith("{") is want_json
