"""SIGTERM with requests in flight (``python run.py``, alone and with
``--workers 2``): the process stops listening at once (new connections are
refused), closes idle connections and WebSockets (1001), lets requests in
flight finish, bodies still being uploaded included, does its final counter
flush and exits 0 within SHUTDOWN_GRACE_SECONDS; a request that outlasts the
grace period is cut and the exit is still on time.

Requests are written by hand with ``Expect: 100-continue``: the server's
``100 Continue`` proves the request is in its handler before the signal is
sent, and the rest of the body can be held back for as long as a test needs.
"""

from __future__ import annotations

import asyncio
import io
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import orjson
import pytest
from PIL import Image

from config.settings import Settings
from proximity_server.runtime.serve import WATCHDOG_EXIT_STATUS, shutdown_budget
from tests.auth_helpers import TEST_JWT_SECRET, TEST_PASSWORD, new_email
from tests.servers import ROOT, env_for, free_port, read_log, start_run_py, stop_process, wait_for_log, wait_until_live

JSON = {"Content-Type": "application/json"}
# Generous for a loaded 2-core machine; every wait below is bounded by one of these.
STEP_TIMEOUT = 10.0
EXIT_MARGIN = 2.0  # process teardown after the server's own "stopped"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class HeldRequest:
    """One HTTP/1.1 request on its own connection, its body sent when the test says."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
        self.reader = reader
        self.writer = writer
        self.body = body
        self.sent = 0

    @classmethod
    async def begin(
        cls,
        writers: list[asyncio.StreamWriter],
        port: int,
        method: str,
        path: str,
        body: bytes,
        headers: dict[str, str],
    ) -> HeldRequest:
        """Send the head with ``Expect: 100-continue``; return once the server says ``100 Continue``."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
        head += ["Expect: 100-continue", *(f"{name}: {value}" for name, value in headers.items())]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STEP_TIMEOUT)
        assert interim.startswith(b"HTTP/1.1 100 Continue"), interim
        return cls(reader, writer, body)

    async def send(self, size: int) -> None:
        self.writer.write(self.body[self.sent : self.sent + size])
        self.sent = min(len(self.body), self.sent + size)
        await self.writer.drain()

    async def trickle_rest(self, chunks: int, pause: float) -> None:
        """The rest of the body in ``chunks`` writes, ``pause`` seconds apart: a slow uplink."""
        size = -(-(len(self.body) - self.sent) // chunks)
        while self.sent < len(self.body):
            await asyncio.sleep(pause)
            await self.send(size)

    async def response(self) -> Response:
        """The whole response: the server closes the connection after it (draining)."""
        raw = await asyncio.wait_for(self.reader.read(), STEP_TIMEOUT)
        head, _, body = raw.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        self.writer.close()
        return Response(int(status_line.split()[1]), headers, body)

    async def cut_off(self) -> bool:
        """True when the server closes the connection without a response."""
        try:
            return await asyncio.wait_for(self.reader.read(), STEP_TIMEOUT) == b""
        except ConnectionResetError:
            return True
        finally:
            self.writer.close()


@pytest.fixture
async def writers() -> AsyncIterator[list[asyncio.StreamWriter]]:
    """Raw connections a test opens; closed at the end, also when it fails midway."""
    opened: list[asyncio.StreamWriter] = []
    yield opened
    for writer in opened:
        writer.close()


def session_body() -> bytes:
    return orjson.dumps({"ble_token": "shut_" + secrets.token_hex(6), "interests": ["devops", "hardstyle"]})


def photo_form(boundary: str) -> bytes:
    image = io.BytesIO()
    Image.new("RGB", (400, 300), (200, 60, 30)).save(image, format="JPEG", quality=95)
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="me.jpg"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode()
        + image.getvalue()
        + f"\r\n--{boundary}--\r\n".encode()
    )


async def assert_refused(port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()


async def wait_exit(proc: subprocess.Popen[bytes], within: float) -> int:
    return await asyncio.to_thread(proc.wait, within)


def server_env(settings: Settings, tmp_path: Path, grace: float) -> dict[str, str]:
    return env_for(
        settings,
        SHUTDOWN_GRACE_SECONDS=str(grace),
        STATS_FLUSH_INTERVAL="3600",
        DATA_DIR=str(tmp_path / "data"),
        PASSWORD_HASH_PROFILE="test",
        JWT_SECRET=TEST_JWT_SECRET,
        ACCESS_LOG="1",
    )


async def test_sigterm_lets_a_slow_upload_finish_and_refuses_new_connections(
    settings: Settings, pg: asyncpg.Connection, tmp_path: Path, writers: list[asyncio.StreamWriter]
) -> None:
    grace = 6.0
    drain_seconds, _, _ = shutdown_budget(grace)
    port = free_port()
    log_path = tmp_path / "server.log"
    proc = start_run_py(port, server_env(settings, tmp_path, grace), log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_until_live(base, proc)
        async with aiohttp.ClientSession() as http:
            email = new_email()
            async with http.post(f"{base}/auth/register", json={"email": email, "password": TEST_PASSWORD}) as resp:
                assert resp.status == 201
                access_token = (await resp.json())["access_token"]
            token = "shut_" + secrets.token_hex(6)
            async with http.post(f"{base}/session", json={"ble_token": token, "interests": ["devops"]}) as resp:
                assert resp.status == 201
                session_id = (await resp.json())["session_id"]
            ws = await http.ws_connect(f"{base}/ws/{token}?session_id={session_id}")

            # An idle keep-alive connection, after one request.
            idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
            writers.append(idle_writer)
            idle_writer.write(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert (await asyncio.wait_for(idle_reader.readuntil(b"\r\n\r\n"), STEP_TIMEOUT)).startswith(
                b"HTTP/1.1 200"
            )

            # A photo upload, half its body sent.
            boundary = "px" + secrets.token_hex(8)
            upload = await HeldRequest.begin(
                writers,
                port,
                "POST",
                "/me/photos",
                photo_form(boundary),
                {
                    "Authorization": f"Bearer {access_token}",
                    "Content-Type": f"multipart/form-data; boundary={boundary}",
                },
            )
            await upload.send(len(upload.body) // 2)

            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            (draining,) = await wait_for_log(log_path, lambda line: line["msg"] == "stopped listening, draining")
            assert draining["requests_in_flight"] == 1
            await assert_refused(port)
            # WebSockets and idle connections are closed at once, not when the upload is done.
            msg = await ws.receive(timeout=STEP_TIMEOUT)
            assert msg.type is aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 1001
            await asyncio.wait_for(idle_reader.read(), STEP_TIMEOUT)  # the rest of /livez's body, then EOF
            assert idle_reader.at_eof()

            await upload.trickle_rest(chunks=5, pause=0.1)
            response = await upload.response()
        assert response.status == 201, response.body
        assert response.headers["connection"] == "close"
        photo_id = orjson.loads(response.body)["photo_id"]

        assert await wait_exit(proc, grace + EXIT_MARGIN) == 0
        # The process left when the upload was done, not at the end of the drain.
        assert time.monotonic() - signalled < drain_seconds
    finally:
        stop_process(proc)
    lines = read_log(log_path)
    messages = [line["msg"] for line in lines]
    assert "requests in flight finished" in messages
    assert "grace period over, cutting requests in flight" not in messages
    assert messages.index("final counter flush") > messages.index("requests in flight finished")
    assert await pg.fetchval("SELECT count(*) FROM photos WHERE id = $1::uuid", photo_id) == 1


async def test_a_request_that_outlasts_the_grace_period_is_cut_and_the_exit_is_on_time(
    settings: Settings, tmp_path: Path, writers: list[asyncio.StreamWriter]
) -> None:
    grace = 1.0
    drain_seconds, _, exit_after = shutdown_budget(grace)
    port = free_port()
    log_path = tmp_path / "server.log"
    proc = start_run_py(port, server_env(settings, tmp_path, grace), log_path)
    try:
        await wait_until_live(f"http://127.0.0.1:{port}", proc)
        stuck = await HeldRequest.begin(writers, port, "POST", "/session", session_body(), JSON)
        await stuck.send(10)  # and never the rest

        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert await stuck.cut_off()
        cut_after = time.monotonic() - signalled
        assert await wait_exit(proc, exit_after + EXIT_MARGIN) == 0
        exited_after = time.monotonic() - signalled
    finally:
        stop_process(proc)
    assert cut_after >= drain_seconds  # the request had its share of the grace period
    assert exited_after < exit_after + EXIT_MARGIN
    lines = read_log(log_path)
    (cut,) = [line for line in lines if line["msg"] == "grace period over, cutting requests in flight"]
    assert cut["requests_in_flight"] == 1
    messages = [line["msg"] for line in lines]
    assert "final counter flush" in messages and "stopped" in messages


async def test_workers_finish_their_requests_in_flight_on_sigterm(
    settings: Settings, tmp_path: Path, writers: list[asyncio.StreamWriter]
) -> None:
    grace = 6.0
    drain_seconds, _, _ = shutdown_budget(grace)
    port = free_port()
    log_path = tmp_path / "server.log"
    proc = start_run_py(port, server_env(settings, tmp_path, grace), log_path, "--workers", "2")
    try:
        await wait_until_live(f"http://127.0.0.1:{port}", proc)
        await wait_for_log(log_path, lambda line: line["msg"] == "listening", count=2, within=STEP_TIMEOUT)
        # Fresh connections: the kernel spreads them over both workers.
        held = [await HeldRequest.begin(writers, port, "POST", "/session", session_body(), JSON) for _ in range(6)]
        for request in held:
            await request.send(10)

        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        draining = await wait_for_log(
            log_path, lambda line: line["msg"] == "stopped listening, draining", count=2, within=STEP_TIMEOUT
        )
        assert len({line["pid"] for line in draining}) == 2
        assert sum(line["requests_in_flight"] for line in draining) == len(held)
        await assert_refused(port)

        await asyncio.gather(*(request.trickle_rest(chunks=3, pause=0.1) for request in held))
        responses = await asyncio.gather(*(request.response() for request in held))
        assert [response.status for response in responses] == [201] * len(held)
        assert await wait_exit(proc, grace + EXIT_MARGIN) == 0
        assert time.monotonic() - signalled < drain_seconds
    finally:
        stop_process(proc)
    lines = read_log(log_path)
    assert len([line for line in lines if line["msg"] == "final counter flush"]) == 2
    assert any(line["msg"] == "all workers stopped" and line["clean"] is True for line in lines)


async def test_a_second_sigterm_cuts_the_wait_short(
    settings: Settings, tmp_path: Path, writers: list[asyncio.StreamWriter]
) -> None:
    grace = 30.0
    port = free_port()
    log_path = tmp_path / "server.log"
    proc = start_run_py(port, server_env(settings, tmp_path, grace), log_path)
    try:
        await wait_until_live(f"http://127.0.0.1:{port}", proc)
        stuck = await HeldRequest.begin(writers, port, "POST", "/session", session_body(), JSON)
        await stuck.send(10)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        await wait_for_log(log_path, lambda line: line["msg"] == "stopped listening, draining")
        proc.send_signal(signal.SIGTERM)
        assert await stuck.cut_off()
        assert await wait_exit(proc, STEP_TIMEOUT) == 0
        assert time.monotonic() - signalled < STEP_TIMEOUT < grace
    finally:
        stop_process(proc)
    messages = [line["msg"] for line in read_log(log_path)]
    assert "second signal: cutting requests in flight now" in messages
    assert "final counter flush" in messages


def test_the_watchdog_ends_a_shutdown_that_hangs() -> None:
    """Should the last steps hang, the process still ends (status 1) when the grace period is over."""
    code = (
        "import time, uvloop\n"
        "from proximity_server.runtime.serve import StopSignals\n"
        "stop = StopSignals(uvloop.new_event_loop())\n"
        "stop.start_watchdog(0.3)\n"
        "time.sleep(30)  # a cleanup that never returns\n"
    )
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, timeout=STEP_TIMEOUT)
    assert proc.returncode == WATCHDOG_EXIT_STATUS
    assert time.monotonic() - started < STEP_TIMEOUT
    assert b"shutdown overran the grace period" in proc.stderr


async def test_a_worker_killed_by_sigterm_while_starting_counts_as_a_clean_stop(tmp_path: Path) -> None:
    """A worker still importing when the stop comes dies of the SIGTERM itself: nothing was lost."""
    code = (
        "import os, sys\n"
        "from proximity_server.runtime.logs import configure_logging\n"
        "from proximity_server.runtime.supervisor import Supervisor\n"
        "configure_logging('INFO')\n"
        "worker = [sys.executable, '-c', 'import time; time.sleep(60)']  # no SIGTERM handler, like a starting worker\n"
        "sys.exit(Supervisor(1, lambda index: worker, os.environ, 1.0).run())\n"
    )
    log_path = tmp_path / "supervisor.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=log_file)
    try:
        await wait_for_log(log_path, lambda line: line["msg"] == "worker started", within=STEP_TIMEOUT)
        proc.send_signal(signal.SIGTERM)
        assert await wait_exit(proc, STEP_TIMEOUT) == 0
    finally:
        stop_process(proc)
    assert any(line["msg"] == "worker stopped while starting" for line in read_log(log_path))
