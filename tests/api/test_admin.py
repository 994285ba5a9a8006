"""The admin console's API: roles, the audit trail, moderation and bans."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import asyncpg
import pytest

from config.settings import Settings
from proximity_server.app import state as keys
from tests.auth_helpers import ACCOUNT_OVERRIDES, TEST_PASSWORD, bearer, new_email, register
from tests.chat_helpers import Person, matched_pair, person
from tests.conftest import ADMIN_TOKEN, AppClient
from tests.helpers import open_session
from tests.profile_helpers import profile_body

ADMIN_EMAIL = "boss@example.com"
BAN_CLOSE_CODE = 4403

ADMIN_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/stats/history", None),
    ("GET", "/admin/live", None),
    ("GET", "/admin/audit", None),
    ("GET", "/admin/reports", None),
    ("POST", f"/admin/reports/{uuid.uuid4()}/resolve", {"action": "dismiss", "note": "x"}),
    ("POST", f"/admin/users/{uuid.uuid4()}/ban", {"reason": "x"}),
    ("DELETE", f"/admin/users/{uuid.uuid4()}/ban", None),
]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(
        **ACCOUNT_OVERRIDES, admin_emails=frozenset({ADMIN_EMAIL}), rate_limit_messages_per_minute=1000
    )


async def admin_login(client: AppClient) -> dict[str, str]:
    body = await register(client, ADMIN_EMAIL)
    return bearer(body["access_token"])


async def test_every_admin_route_refuses_anonymous_and_normal_users(client: AppClient) -> None:
    normal = await person(client)
    for method, path, body in ADMIN_ROUTES:
        resp = await client.request(method, path, json=body)
        assert resp.status == 401, (method, path)
        resp = await client.request(method, path, json=body, headers=normal.auth)
        assert resp.status == 403, (method, path)
        assert (await resp.json())["error"]["code"] == "forbidden"


async def test_admin_email_signs_in_with_the_admin_role(client: AppClient) -> None:
    headers = await admin_login(client)
    resp = await client.get("/admin/audit", headers=headers)
    assert resp.status == 200
    login = await client.post("/auth/login", json={"email": ADMIN_EMAIL.upper(), "password": TEST_PASSWORD})
    assert login.status == 200
    token = (await login.json())["access_token"]
    assert (await client.get("/stats", headers=bearer(token))).status == 200
    # the token still works for scripts
    assert (await client.get("/admin/reports", headers=bearer(ADMIN_TOKEN))).status == 200


async def report(client: AppClient, by: Person, whom: Person, reason: str = "harassment") -> str:
    resp = await client.post(
        "/reports", json={"user_id": whom.user_id, "reason": reason, "details": "rude"}, headers=by.auth
    )
    assert resp.status == 201
    return str((await resp.json())["report_id"])


async def test_queue_shows_the_reported_conversation_and_nothing_else(client: AppClient) -> None:
    a, b, match = await matched_pair(client)
    c = await person(client)
    await client.put("/me/profile", json=profile_body(display_name="Bea"), headers=b.auth)
    conversation = match["conversation_id"]
    for text in ("hi", "go away"):
        resp = await client.post(
            f"/conversations/{conversation}/messages",
            json={"client_id": uuid.uuid4().hex, "text": text},
            headers=b.auth,
        )
        assert resp.status in (200, 201), await resp.text()
    # b also talks to c: that conversation is none of the admin's business
    await client.post("/likes", json={"user_id": c.user_id, "action": "like"}, headers=b.auth)
    await client.post("/likes", json={"user_id": b.user_id, "action": "like"}, headers=c.auth)
    first = await report(client, a, b)
    await report(client, c, b, "spam")
    resp = await client.get("/admin/reports", params={"status": "open", "limit": "1"}, headers=bearer(ADMIN_TOKEN))
    assert resp.status == 200
    page = await resp.json()
    [item] = page["reports"]
    assert item["id"] == first and item["reason"] == "harassment" and item["details"] == "rude"
    assert item["reported"]["user_id"] == b.user_id and item["reported"]["display_name"] == "Bea"
    assert item["reported"]["reports_total"] == 2
    assert [m["text"] for m in item["messages"]] == ["hi", "go away"]
    assert page["next_cursor"]
    resp = await client.get("/admin/reports", params={"cursor": page["next_cursor"]}, headers=bearer(ADMIN_TOKEN))
    [second] = (await resp.json())["reports"]
    assert second["reason"] == "spam" and second["messages"] == []


async def test_a_ban_takes_effect_everywhere_and_is_audited(client: AppClient, pg: asyncpg.Connection) -> None:
    admin = await admin_login(client)
    viewer = await person(client)
    email = new_email()
    body = await register(client, email)
    bad = Person(body["user_id"], body["access_token"])
    assert (await client.put("/me/profile", json=profile_body(), headers=bad.auth)).status == 200
    assert (await client.put("/me/profile", json=profile_body(), headers=viewer.auth)).status == 200
    assert (await client.get(f"/profiles/{bad.user_id}", headers=viewer.auth)).status == 200
    ws = await client.ws_connect("/ws", headers=bad.auth)
    resp = await client.post("/session", json={"ble_token": "ab" * 8, "interests": ["techno"]}, headers=bad.auth)
    assert resp.status == 201, await resp.text()
    other_token, _ = await open_session(client, ["techno"])
    reporter = await person(client)
    report_id = await report(client, reporter, bad)

    resp = await client.post(
        f"/admin/reports/{report_id}/resolve", json={"action": "ban", "note": "threats"}, headers=admin
    )
    assert resp.status == 200, await resp.text()
    msg = await ws.receive(timeout=1.0)
    assert msg.type is aiohttp.WSMsgType.CLOSE and ws.close_code == BAN_CLOSE_CODE
    assert (await client.get("/me", headers=bad.auth)).status == 401
    login = await client.post("/auth/login", json={"email": email, "password": TEST_PASSWORD})
    assert login.status == 403 and (await login.json())["error"]["code"] == "banned"
    assert (await client.get(f"/profiles/{bad.user_id}", headers=viewer.auth)).status == 404
    assert await client.app[keys.REDIS].exists(client.app[keys.REDIS_KEYS].session("ab" * 8)) == 0
    assert other_token
    again = await client.post(
        f"/admin/reports/{report_id}/resolve", json={"action": "dismiss", "note": "x"}, headers=admin
    )
    assert again.status == 409

    resp = await client.delete(f"/admin/users/{bad.user_id}/ban", json={"reason": "appeal upheld"}, headers=admin)
    assert resp.status == 200
    login = await client.post("/auth/login", json={"email": email, "password": TEST_PASSWORD})
    assert login.status == 200
    assert (await client.get(f"/profiles/{bad.user_id}", headers=viewer.auth)).status == 200

    entries = (await (await client.get("/admin/audit", headers=admin)).json())["entries"]
    assert [e["action"] for e in entries] == ["unban", "report_ban", "ban"]
    assert entries[2]["target_user_id"] == bad.user_id and entries[2]["reason"] == "threats"
    assert entries[2]["report_id"] == report_id
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pg.execute("UPDATE admin_audit SET reason = 'nothing to see'")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pg.execute("DELETE FROM admin_audit")


async def test_resolve_and_ban_validate_their_input(client: AppClient) -> None:
    a, b = await person(client), await person(client)
    report_id = await report(client, a, b)
    admin = bearer(ADMIN_TOKEN)
    for body in ({"action": "shrug", "note": "x"}, {"action": "warn", "note": ""}):
        resp = await client.post(f"/admin/reports/{report_id}/resolve", json=body, headers=admin)
        assert resp.status == 400
    resp = await client.post(
        f"/admin/reports/{uuid.uuid4()}/resolve", json={"action": "warn", "note": "x"}, headers=admin
    )
    assert resp.status == 404
    resp = await client.post(f"/admin/users/{uuid.uuid4()}/ban", json={"reason": "x"}, headers=admin)
    assert resp.status == 404
    resp = await client.post(
        f"/admin/reports/{report_id}/resolve", json={"action": "warn", "note": "first warning"}, headers=admin
    )
    assert resp.status == 200
    resolved = await (await client.get("/admin/reports", params={"status": "resolved"}, headers=admin)).json()
    assert [r["resolution"] for r in resolved["reports"]] == ["warn"]


async def test_live_figures_stream(client: AppClient) -> None:
    await open_session(client, ["techno"])
    resp = await client.get("/admin/live", headers=bearer(ADMIN_TOKEN))
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    line = await asyncio.wait_for(resp.content.readline(), 3)
    assert line.startswith(b"data: ") and b'"active_sessions":1' in line
    resp.close()


async def test_console_page_is_served_with_the_strict_policy(client: AppClient) -> None:
    resp = await client.get("/admin/")
    assert resp.status == 200
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    assert "/static/admin/admin.js" in await resp.text()
    assert (await client.get("/static/admin/admin.js")).status == 200
