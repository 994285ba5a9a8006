"""The slim WebSocket connection behind WS /ws/{ble_token}: the shared
heartbeat, closes from either side, peers that vanish, and that sockets leave
nothing behind (hub channels, aiohttp request handlers, tasks)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
from collections.abc import Callable

import aiohttp

from proximity_server.app import state as keys
from proximity_server.realtime.hub import Hub
from tests.conftest import AppClient, MakeClient
from tests.helpers import bearer, open_session

HEARTBEAT = 0.3


async def wait_until(predicate: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def hub_of(client: AppClient) -> Hub:
    return client.app[keys.HUB]


def request_handlers(client: AppClient) -> int:
    """aiohttp's live HTTP request handlers (a detached socket holds none)."""
    runner = client.server.runner
    assert runner is not None and runner.server is not None
    return len(runner.server.connections)


async def test_heartbeat_drops_a_client_that_never_answers_pings(make_client: MakeClient) -> None:
    client = await make_client(ws_heartbeat_seconds=HEARTBEAT)
    token, secret = await open_session(client, ["devops"])
    ws = await client.ws_connect(f"/ws/{token}", headers=bearer(secret), autoping=False)
    channel = client.app[keys.REDIS_KEYS].token_channel(token)
    assert len(tuple(hub_of(client).connections(channel))) == 1
    pings = 0
    started = time.monotonic()
    while True:
        msg = await ws.receive(timeout=5 * HEARTBEAT)
        if msg.type is aiohttp.WSMsgType.PING:
            pings += 1  # and never answered
            continue
        assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE), msg
        break
    assert pings >= 1
    assert time.monotonic() - started < 3 * HEARTBEAT + 0.5  # within two intervals, plus slack
    await wait_until(lambda: not hub_of(client).connections(channel))
    await wait_until(lambda: len(hub_of(client).sockets) == 0)


async def test_socket_that_answers_pings_stays_open(make_client: MakeClient) -> None:
    client = await make_client(ws_heartbeat_seconds=HEARTBEAT)
    token, secret = await open_session(client, ["devops"])
    ws = await client.ws_connect(f"/ws/{token}", headers=bearer(secret), autoping=True)
    # The client answers pings while it reads; stay idle for several intervals.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5 * HEARTBEAT):
            msg = await ws.receive()
            raise AssertionError(f"unexpected frame {msg}")
    assert not ws.closed
    await ws.send_str('{"type": "ping", "id": 1}')
    reply = await ws.receive(timeout=2.0)
    assert reply.type is aiohttp.WSMsgType.TEXT and '"ok":true' in reply.data
    await ws.close()


async def test_client_close_is_answered_and_forgotten(client: AppClient) -> None:
    token, secret = await open_session(client, ["devops"])
    ws = await client.ws_connect(f"/ws/{token}", headers=bearer(secret))
    channel = client.app[keys.REDIS_KEYS].token_channel(token)
    assert len(tuple(hub_of(client).connections(channel))) == 1
    assert await ws.close(code=4000, message=b"bye")
    assert ws.close_code == 4000  # the server echoed the code
    await wait_until(lambda: channel not in hub_of(client)._channels)
    await wait_until(lambda: len(hub_of(client).sockets) == 0)


async def test_peer_that_vanishes_without_a_close_frame_is_cleaned_up(client: AppClient) -> None:
    token, secret = await open_session(client, ["devops"])
    assert client.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws/{token}?session_id={secret} HTTP/1.1\r\nHost: localhost\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3.0)
    assert status.startswith(b"HTTP/1.1 101")
    channel = client.app[keys.REDIS_KEYS].token_channel(token)
    await wait_until(lambda: len(tuple(hub_of(client).connections(channel))) == 1)
    writer.transport.abort()  # no close frame, just a reset
    await wait_until(lambda: channel not in hub_of(client)._channels)
    await wait_until(lambda: len(hub_of(client).sockets) == 0)


async def test_many_sockets_leave_nothing_behind(client: AppClient) -> None:
    hub = hub_of(client)
    tasks_before = len(asyncio.all_tasks())
    sessions = [await open_session(client, ["devops"]) for _ in range(40)]
    handlers_idle = request_handlers(client)
    sockets = await asyncio.gather(
        *(client.ws_connect(f"/ws/{token}", headers=bearer(secret)) for token, secret in sessions)
    )
    assert hub.connection_count == 40
    assert len(hub.sockets) == 40
    # Each open socket is off aiohttp's books: no request handler, no handler task.
    await wait_until(lambda: request_handlers(client) <= handlers_idle)
    assert len(asyncio.all_tasks()) <= tasks_before + 2  # the heartbeat (+ the client's own)
    for ws in sockets[::2]:
        await ws.send_str('{"type": "ping", "id": "x"}')
        assert (await ws.receive(timeout=2.0)).type is aiohttp.WSMsgType.TEXT
    await asyncio.gather(*(ws.close() for ws in sockets))
    await wait_until(lambda: hub.connection_count == 0 and not hub._channels)
    await wait_until(lambda: len(hub.sockets) == 0)
    assert hub.sockets._heartbeat is None
    await wait_until(lambda: len(asyncio.all_tasks()) <= tasks_before)


async def test_client_pings_are_answered(client: AppClient) -> None:
    token, secret = await open_session(client, ["devops"])
    ws = await client.ws_connect(f"/ws/{token}", headers=bearer(secret), autoping=False)
    await ws.ping(b"are you there")
    msg = await ws.receive(timeout=2.0)
    assert msg.type is aiohttp.WSMsgType.PONG
    assert msg.data == b"are you there"
    await ws.close()
