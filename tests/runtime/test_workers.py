"""``python run.py --workers 2``: two processes serve one port; the supervisor
restarts a killed worker, and on SIGTERM stops them all gracefully (sockets
closed with 1001, exit 0)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from config.settings import Settings
from proximity_server.runtime.supervisor import worker_count
from tests.servers import env_for, free_port, start_run_py, wait_until_live

GRACE_SECONDS = 3


def read_log(path: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in path.read_bytes().splitlines():
        if raw.strip():
            with contextlib.suppress(orjson.JSONDecodeError):  # a line still being written
                lines.append(orjson.loads(raw))
    return lines


def started_workers(path: Path) -> dict[int, int]:
    """worker index -> pid of its latest start, from the supervisor's log lines."""
    return {line["worker_index"]: line["worker_pid"] for line in read_log(path) if line["msg"] == "worker started"}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def serving_pids(base: str, log_path: Path, want: int, within: float = 8.0) -> set[int]:
    """Pids that served requests, from the access log lines: keep asking over
    fresh connections (the kernel spreads them over the workers) until ``want``
    different pids have answered."""
    deadline = time.monotonic() + within
    pids: set[int] = set()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        while time.monotonic() < deadline:
            for _ in range(10):
                try:
                    async with http.get(f"{base}/livez") as resp:
                        assert resp.status == 200
                except aiohttp.ClientError:
                    pass  # a worker that is still starting
            pids = {line["pid"] for line in read_log(log_path) if line["msg"] == "request" and "pid" in line}
            if len(pids) >= want:
                return pids
            await asyncio.sleep(0.05)
    return pids


def test_worker_count() -> None:
    assert worker_count("3") == 3
    assert worker_count("auto") >= 1
    assert worker_count("0") == worker_count("auto")


async def test_workers_share_the_port_restart_and_stop_gracefully(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    env = env_for(settings, STATS_FLUSH_INTERVAL="3600", SHUTDOWN_GRACE_SECONDS=str(GRACE_SECONDS), ACCESS_LOG="1")
    log_path = tmp_path / "server.log"
    proc = start_run_py(port, env, log_path, "--workers", "2")
    base = f"http://127.0.0.1:{port}"
    all_pids: set[int] = set()
    try:
        await wait_until_live(base, proc)
        workers = started_workers(log_path)
        assert sorted(workers) == [0, 1]
        all_pids.update(workers.values())

        # Both workers answer on the one port, and every worker log line names its worker.
        assert await serving_pids(base, log_path, 2) == set(workers.values())
        starting = [line for line in read_log(log_path) if line["msg"] == "starting"]
        assert {(line["worker"], line["pid"]) for line in starting} == set(workers.items())

        # kill -9 one worker: the supervisor logs it and starts a new one; the port keeps answering.
        os.kill(workers[0], signal.SIGKILL)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            deadline = time.monotonic() + 8
            while started_workers(log_path)[0] == workers[0]:
                assert time.monotonic() < deadline, "killed worker was not restarted"
                async with http.get(f"{base}/livez") as resp:
                    assert resp.status == 200
                await asyncio.sleep(0.05)
        exits = [line for line in read_log(log_path) if line["msg"] == "worker exited, restarting"]
        assert [(line["worker_index"], line["exit"]) for line in exits] == [(0, "signal SIGKILL")]
        new_workers = started_workers(log_path)
        assert new_workers[1] == workers[1] and new_workers[0] != workers[0]
        all_pids.update(new_workers.values())
        # The new worker comes up and serves too.
        restarted = await serving_pids(base, log_path, 3)
        assert new_workers[0] in restarted

        # SIGTERM to the supervisor: sockets on every worker get 1001, everyone exits 0.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            sockets = []
            for _ in range(6):
                token = "wrk_" + secrets.token_hex(6)
                async with http.post(f"{base}/session", json={"ble_token": token, "interests": ["devops"]}) as resp:
                    assert resp.status == 201
                    secret = (await resp.json())["session_id"]
                sockets.append(await http.ws_connect(f"{base}/ws/{token}?session_id={secret}"))
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            for ws in sockets:
                msg = await ws.receive(timeout=GRACE_SECONDS + 2)
                assert msg.type is aiohttp.WSMsgType.CLOSE
                assert ws.close_code == 1001
        assert await asyncio.to_thread(proc.wait, GRACE_SECONDS + 5) == 0
        assert time.monotonic() - started < GRACE_SECONDS + 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in all_pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert not [pid for pid in all_pids if pid_alive(pid)], "a worker outlived the supervisor"
    lines = read_log(log_path)
    flushes = {line["pid"] for line in lines if line["msg"] == "final counter flush"}
    assert flushes == {new_workers[0], new_workers[1]}
    assert any(line["msg"] == "all workers stopped" and line["clean"] is True for line in lines)
