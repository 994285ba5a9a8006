"""A device's server process is killed (SIGKILL) while messages are sent to
it; its match hears that it went offline; the device reconnects to another
process, resumes, and gets every missed message exactly once, in order."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from config.settings import Settings
from tests.auth_helpers import ACCOUNT_OVERRIDES, TEST_JWT_SECRET
from tests.chat_helpers import matched_pair
from tests.conftest import AppClient
from tests.servers import env_for, free_port, start_run_py, wait_until_live

HEARTBEAT_SECONDS = 1.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(**ACCOUNT_OVERRIDES, ws_heartbeat_seconds=HEARTBEAT_SECONDS)


async def read_until_result(ws: aiohttp.ClientWebSocketResponse) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while True:
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        data = orjson.loads(msg.data)
        if data["type"] == "result":
            return frames, data
        frames.append(data)


async def test_resume_after_the_process_was_killed(client: AppClient, settings: Settings, tmp_path: Path) -> None:
    a, b, match = await matched_pair(client)
    conversation_id = match["conversation_id"]
    watcher = await client.ws_connect("/ws", headers=b.auth)  # b, on the surviving process
    await watcher.send_str('{"type": "resume", "id": 1, "last_event_id": null}')
    await read_until_result(watcher)
    port = free_port()
    env = env_for(
        settings,
        JWT_SECRET=TEST_JWT_SECRET,
        PASSWORD_HASH_PROFILE="test",
        ACCESS_LOG="0",
        WS_HEARTBEAT_SECONDS=str(HEARTBEAT_SECONDS),
    )
    doomed = start_run_py(port, env, tmp_path / "doomed.log")
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_until_live(base, doomed)
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"{base}/ws", headers=a.auth)
            await ws.send_str('{"type": "resume", "id": 1, "last_event_id": 0}')
            frames, result = await read_until_result(ws)
            assert [f["type"] for f in frames] == ["match"] and result["ok"]
            last_seen = frames[-1]["event_id"]
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(10)
            # a's claim runs out within a heartbeat or two; the survivor tells b
            for _ in range(50):
                msg = await watcher.receive(timeout=5)
                event = orjson.loads(msg.data)
                if event["type"] == "presence" and event["user_id"] == a.user_id and not event["online"]:
                    break
            else:
                raise AssertionError("no offline presence event")
            assert event["last_seen"]
            for n in range(10):  # sent while the device is cut off
                resp = await client.post(
                    f"/conversations/{conversation_id}/messages",
                    json={"client_id": f"k{n}", "text": f"while you were away {n}"},
                    headers=b.auth,
                )
                assert resp.status == 201
            await ws.close()
    finally:
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait()
    ws = await client.ws_connect("/ws", headers=a.auth)
    await ws.send_str(orjson.dumps({"type": "resume", "id": 2, "last_event_id": last_seen}).decode())
    frames, result = await read_until_result(ws)
    assert result["result"]["replayed"] == 10
    assert [f["message"]["text"] for f in frames] == [f"while you were away {n}" for n in range(10)]
    assert [f["event_id"] for f in frames] == list(range(last_seen + 1, last_seen + 11))
    await ws.close()
    await watcher.close()
