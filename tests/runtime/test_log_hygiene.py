"""Nothing linkable in the logs: a real server at LOG_LEVEL=DEBUG runs a full
flow, and no BLE token, session secret, email, password, access or refresh
token or message text appears anywhere in what it printed."""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from config.settings import Settings
from tests.auth_helpers import TEST_JWT_SECRET
from tests.helpers import new_token
from tests.profile_helpers import profile_body
from tests.servers import ROOT, env_for, free_port, read_log, stop_process, wait_until_live

STOP_WITHIN = 15.0


def start_capturing(port: int, env: dict[str, str], out: Path, err: Path) -> subprocess.Popen[bytes]:
    with out.open("wb") as stdout, err.open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "run.py", "--port", str(port)], cwd=ROOT, env=env, stdout=stdout, stderr=stderr
        )


async def ok(resp: aiohttp.ClientResponse, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def full_flow(base: str) -> list[str]:
    """Every kind of request with something personal in it; returns the personal values."""
    password = "pw-" + secrets.token_urlsafe(12)
    text = "distinctive message " + secrets.token_hex(8)
    emails = [f"hygiene_{secrets.token_hex(5)}@example.com" for _ in range(2)]
    a_token, b_token, a_next = new_token(), new_token(), new_token()
    async with aiohttp.ClientSession(base) as http:
        people = []
        for email in emails:
            await ok(await http.post("/auth/register", json={"email": email, "password": password}), 201)
            pair = await ok(await http.post("/auth/login", json={"email": email, "password": password}))
            people.append(pair)
        await ok(await http.post("/auth/login", json={"email": emails[0], "password": password + "x"}), 401)
        a, b = ({"Authorization": f"Bearer {p['access_token']}"} for p in people)
        await ok(await http.put("/me/profile", json=profile_body(), headers=a))
        await ok(await http.post("/likes", json={"user_id": people[1]["user_id"], "action": "like"}, headers=a))
        match = await ok(await http.post("/likes", json={"user_id": people[0]["user_id"], "action": "like"}, headers=b))
        user_ws = await http.ws_connect(f"/ws?access_token={people[1]['access_token']}")

        interests = {"interests": ["devops"]}
        secret_a = (await ok(await http.post("/session", json={"ble_token": a_token, **interests}, headers=a), 201))[
            "session_id"
        ]
        secret_b = (await ok(await http.post("/session", json={"ble_token": b_token, **interests}), 201))["session_id"]
        nudge_ws = await http.ws_connect(f"/ws/{a_token}?session_id={secret_a}")
        body = {"own_token": b_token, "detected_token": a_token}
        assert (await ok(await http.post("/match", json=body, headers={"Authorization": f"Bearer {secret_b}"})))[
            "nudge_sent"
        ]
        assert (await nudge_ws.receive_json(timeout=5))["type"] == "nudge"

        conversation = match["conversation_id"]
        message = {"client_id": uuid.uuid4().hex, "text": text}
        await ok(await http.post(f"/conversations/{conversation}/messages", json=message, headers=a), 201)
        await ok(await http.get(f"/conversations/{conversation}/messages", headers=b))

        rotate = {"own_token": a_token, "new_token": a_next}
        await ok(await http.post("/session/rotate", json=rotate, headers={"Authorization": f"Bearer {secret_a}"}))
        await ok(await http.post("/session/rotate", json=rotate, headers={"Authorization": f"Bearer {secret_a}"}), 401)
        # refused and unmatched requests carrying the same values
        async with http.get(f"/ws/{b_token}?session_id={secret_a}") as refused:
            assert refused.status in (400, 401)
        async with http.get(f"/ws/{a_next}/{secret_b}") as unmatched:
            assert unmatched.status == 404
        await nudge_ws.close()
        await user_ws.close()
    tokens = [p[name] for p in people for name in ("access_token", "refresh_token")]
    return [password, text, *emails, a_token, b_token, a_next, secret_a, secret_b, *tokens]


async def test_no_personal_value_reaches_any_log_line(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    env = env_for(
        settings,
        LOG_LEVEL="DEBUG",
        ACCESS_LOG="1",
        PASSWORD_HASH_PROFILE="test",
        JWT_SECRET=TEST_JWT_SECRET,
        RATE_LIMIT_AUTH_PER_MINUTE="1000",
        RATE_LIMIT_API_PER_MINUTE="1000",
    )
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    proc = start_capturing(port, env, out, err)
    try:
        await wait_until_live(f"http://127.0.0.1:{port}", proc)
        values = await full_flow(f"http://127.0.0.1:{port}")
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, STOP_WITHIN)
    finally:
        stop_process(proc)
    printed = out.read_text(errors="replace") + err.read_text(errors="replace")
    leaked = [value for value in values if value in printed]
    assert not leaked, f"{len(leaked)} personal value(s) in the logs"
    # the logs were written, at DEBUG, with the masked forms
    paths = [line.get("path") for line in read_log(err) + read_log(out) if line.get("msg") == "request"]
    assert "/session/rotate" in paths and "/auth/login" in paths
    assert f"/ws/{new_token()[:2]}…" in paths  # the proximity socket, its token masked
    assert "/ws/…" in paths


def test_a_token_channel_is_logged_with_its_token_cut() -> None:
    from store.redis_keys import Keys, loggable_channel

    keys = Keys("px:")
    token = "tok-" + "a1b2c3d4e5f6"
    shown = loggable_channel(keys.token_channel(token))
    assert token not in shown and shown.endswith("{to…}")
    assert loggable_channel(keys.user_channel("u1")) == keys.user_channel("u1")
