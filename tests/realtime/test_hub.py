"""The hub's bounded send queues: a reader that stops reading is cut off with
4008 while a fast one on the same process gets every frame."""

from __future__ import annotations

import asyncio

import aiohttp

from proximity_server.app import state as keys
from proximity_server.realtime.connection import SEND_QUEUE_LIMIT
from tests.conftest import AppClient
from tests.helpers import bearer, open_session


async def test_slow_reader_is_closed_and_fast_reader_unaffected(client: AppClient) -> None:
    slow_token, slow_secret = await open_session(client, ["devops"])
    fast_token, fast_secret = await open_session(client, ["devops"])
    slow = await client.ws_connect(f"/ws/{slow_token}", headers=bearer(slow_secret))  # never reads
    fast = await client.ws_connect(f"/ws/{fast_token}", headers=bearer(fast_secret))
    hub = client.app[keys.HUB]
    redis_keys = client.app[keys.REDIS_KEYS]
    (slow_conn,) = hub.connections(redis_keys.token_channel(slow_token))
    (fast_conn,) = hub.connections(redis_keys.token_channel(fast_token))

    big = b'{"type":"filler","pad":"' + b"x" * 256 * 1024 + b'"}'
    sent = 0
    received = 0

    async def read_fast() -> None:
        nonlocal received
        while received < 400:
            msg = await fast.receive(timeout=5.0)
            assert msg.type is aiohttp.WSMsgType.TEXT
            received += 1

    reader = asyncio.create_task(read_fast())
    for _ in range(400):
        slow_conn.send(big)
        fast_conn.send(b'{"type":"tick"}')
        sent += 1
        await asyncio.sleep(0.001)
    await asyncio.wait_for(reader, 10.0)
    assert received == sent
    assert slow_conn.closed
    assert slow_conn.queued == 0
    assert not fast_conn.closed
    # the slow socket was cut off; what its client eventually reads ends in 4008 or a reset
    codes: set[int | None] = set()
    try:
        while True:
            msg = await slow.receive(timeout=5.0)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                codes.add(slow.close_code)
                break
    except (TimeoutError, aiohttp.ClientError):
        codes.add(None)
    assert codes <= {4008, 1006, None}
    assert SEND_QUEUE_LIMIT < 400
    await fast.close()
