"""The admin console end to end: an admin reads the charts and bans a
reported person from the queue (their open web-app tab is signed out at
once); a normal account is refused. Checked with axe-core, photographed at
desktop and phone widths, and no console error is allowed."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, WebSocket, expect

from tests.browser.conftest import SERVER_ENV
from tests.browser.test_web_app import PASSWORD, PHONE, Person, check_screen, log_in, open_person
from tests.conftest import namespaced_settings
from tests.servers import env_for, free_port, start_run_py, stop_process, wait_until_live

ADMIN_EMAIL = f"admin-{secrets.token_hex(4)}@example.com"
# Small counts are shown here (the default hides every cell under 10).
CONSOLE_ENV = {**SERVER_ENV, "ADMIN_EMAILS": ADMIN_EMAIL, "STATS_MIN_COUNT": "1", "STATS_FLUSH_INTERVAL": "0.2"}
SIGN_OUT_WITHIN_MS = 1000
BAN_CLOSE_CODE = 4403
# Added through DevTools (the page's CSP stays strict): every socket's close code.
RECORD_CLOSE_CODES = """(() => {
  const Native = window.WebSocket;
  window.__closeCodes = [];
  window.WebSocket = class extends Native {
    constructor(...args) { super(...args); this.addEventListener("close", (e) => window.__closeCodes.push(e.code)); }
  };
})();"""
SEED_TIMEOUT_S = 15.0


@pytest.fixture(scope="module")
async def console_base(service_urls: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    database_url, redis_url = service_urls
    tmp: Path = tmp_path_factory.mktemp("admin")
    async for settings in namespaced_settings(database_url, redis_url, cluster=False):
        port = free_port()
        proc = start_run_py(port, env_for(settings, DATA_DIR=str(tmp / "data"), **CONSOLE_ENV), tmp / "server.log")
        base = f"http://127.0.0.1:{port}"
        try:
            await wait_until_live(base, proc)
            async with aiohttp.ClientSession(base_url=base) as http:
                await register(http, ADMIN_EMAIL)
            yield base
        finally:
            stop_process(proc)


async def register(http: aiohttp.ClientSession, email: str, name: str | None = None) -> tuple[str, dict[str, str]]:
    async with http.post("/auth/register", json={"email": email, "password": PASSWORD}) as resp:
        assert resp.status == 201, await resp.text()
        body = await resp.json()
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    if name:
        profile = {"display_name": name, "birthdate": "1994-05-17", "gender": "woman", "interested_in": ["man"]}
        async with http.put("/me/profile", json=profile, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
    return str(body["user_id"]), headers


async def admin_login(http: aiohttp.ClientSession) -> dict[str, str]:
    async with http.post("/auth/login", json={"email": ADMIN_EMAIL, "password": PASSWORD}) as resp:
        assert resp.status == 200, await resp.text()
        return {"Authorization": f"Bearer {(await resp.json())['access_token']}"}


async def seed_activity(http: aiohttp.ClientSession, admin: dict[str, str]) -> dict[str, Any]:
    """Proximity sessions with interests; waits until the flushed figures show them."""
    for interests in (["hiking", "jazz"], ["hiking"], ["board games"]):
        async with http.post("/session", json={"ble_token": secrets.token_hex(16), "interests": interests}) as resp:
            assert resp.status == 201, await resp.text()
    deadline = time.monotonic() + SEED_TIMEOUT_S
    while True:
        async with http.get("/stats/history?granularity=day", headers=admin) as resp:
            assert resp.status == 200, await resp.text()
            data: dict[str, Any] = await resp.json()
        if any(data["series"]["sessions"]["values"]) and any(
            any(s["values"]) for s in data["category_sessions"].values()
        ):
            return data
        assert time.monotonic() < deadline, f"the seeded sessions never reached the figures: {data}"
        await asyncio.sleep(0.2)


async def open_console(browser: Browser, base: str, email: str, viewport: dict[str, int] | None = None) -> Person:
    p = await open_person(browser, base, "Admin", viewport or {"width": 1280, "height": 800})
    p.email = email
    await p.page.goto("/admin/")
    await p.page.get_by_label("Email").fill(email)
    await p.page.get_by_label("Password").fill(PASSWORD)
    await p.page.get_by_role("button", name="Sign in").click()
    return p


def socket_ready(page: Page) -> asyncio.Event:
    """Set once the page's realtime socket has answered its first command (auth)."""
    ready = asyncio.Event()

    def watch(ws: WebSocket) -> None:
        ws.on("framereceived", lambda frame: ready.set() if '"result"' in str(frame) else None)

    page.on("websocket", watch)
    return ready


async def test_admin_reads_charts_and_bans_a_reported_person(module_browser: Browser, console_base: str) -> None:
    people: list[Person] = []
    async with aiohttp.ClientSession(base_url=console_base) as http:
        admin_headers = await admin_login(http)
        _, reporter = await register(http, f"rita-{secrets.token_hex(4)}@example.com", "Rita")
        rea_email = f"rea-{secrets.token_hex(4)}@example.com"
        rea_id, _ = await register(http, rea_email, "Rea")
        body = {"user_id": rea_id, "reason": "harassment", "details": "sent threats"}
        async with http.post("/reports", json=body, headers=reporter) as resp:
            assert resp.status == 201, await resp.text()
        await seed_activity(http, admin_headers)

    # Rea has the web app open and connected.
    rea = await open_person(module_browser, console_base, "Rea", PHONE)
    people.append(rea)
    rea.email = rea_email
    await rea.page.add_init_script(RECORD_CLOSE_CODES)
    await rea.page.reload()
    ready = socket_ready(rea.page)
    await log_in(rea)
    await asyncio.wait_for(ready.wait(), 10)

    admin = await open_console(module_browser, console_base, ADMIN_EMAIL)
    people.append(admin)
    page = admin.page
    await expect(page.get_by_role("heading", name="Last 30 days")).to_be_visible()
    # Every chart is drawn beside its data table: one point per visible
    # cell, none for hidden ones (they are gaps, not zeros).
    charts = page.locator("#charts .chart")
    await expect(charts).to_have_count(5)
    for i in range(5):
        chart = charts.nth(i)
        await expect(chart.get_by_role("row")).to_have_count(31)  # header + 30 days
        shown = await chart.get_by_role("cell").filter(has_text=re.compile(r"^\d+$")).count()
        await expect(chart.locator("svg circle.point")).to_have_count(shown)
    assert await page.locator("#charts svg circle.point").count() >= 3  # sessions, sign-ups, active users
    sessions = page.get_by_role("table", name="Proximity sessions per day")
    await expect(sessions.get_by_role("row")).to_have_count(31)  # header + 30 days
    today = sessions.get_by_role("row").nth(1).get_by_role("cell").last  # newest day first
    assert int(await today.inner_text()) >= 3
    signups = page.get_by_role("table", name="Sign-ups per day").get_by_role("row").nth(1).get_by_role("cell").last
    assert int(await signups.inner_text()) >= 3
    # Top categories: one bar per category, the same figures in the table.
    bars = page.locator("#categories svg rect.bar")
    assert await bars.count() >= 1
    categories = page.get_by_role("table", name="Sessions per category (visible cells)").get_by_role("row")
    await expect(categories).to_have_count(await bars.count())
    await expect(page.locator("#live-sessions")).to_have_text("3")
    await check_screen(page, "admin-console")

    # Ban from the queue: the console asks for the reason in its own dialog.
    report = page.get_by_role("article").filter(has=page.get_by_role("heading", name="harassment: Rea"))
    await expect(report.get_by_text("sent threats")).to_be_visible()
    await report.get_by_role("button", name="Ban").click()
    dialog = page.get_by_role("dialog", name="Ban the reported person: Rea")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_label("Reason")).to_be_focused()
    await dialog.get_by_role("button", name="Ban").click()  # an empty reason is refused
    await expect(dialog.get_by_role("alert")).to_have_text("Give a reason: it goes into the audit log.")
    await expect(dialog).to_be_visible()
    await dialog.get_by_label("Reason").fill("Threats in chat, confirmed")
    await check_screen(page, "admin-ban-dialog")
    started = time.monotonic()
    await dialog.get_by_role("button", name="Ban").click()
    # Rea's open tab is closed with 4403 and shows the sign-in screen within a second.
    await expect(rea.page.get_by_label("Password")).to_be_visible(timeout=SIGN_OUT_WITHIN_MS)
    assert (time.monotonic() - started) * 1000 < SIGN_OUT_WITHIN_MS + 200
    assert await rea.page.evaluate("window.__closeCodes") == [BAN_CLOSE_CODE]
    sockets_after_ban = socket_ready(rea.page)
    await asyncio.sleep(1)
    assert not sockets_after_ban.is_set(), "the banned tab reconnected"
    await expect(dialog).to_be_hidden()
    await expect(page.get_by_role("status").filter(has_text="Report on Rea resolved: ban.")).to_be_visible()
    await expect(report).to_have_count(0)
    await expect(page.get_by_text("No open reports.")).to_be_visible()

    async with (
        aiohttp.ClientSession(base_url=console_base) as http,
        http.get("/admin/audit", headers=admin_headers) as resp,
    ):
        audit = await resp.json()
    assert "Threats in chat, confirmed" in str(audit)

    for p in people:
        await p.context.close()
    for p in people:
        assert not p.errors, f"console errors for {p.name}: {p.errors}"


async def test_cancelling_the_reason_dialog_resolves_nothing(module_browser: Browser, console_base: str) -> None:
    async with aiohttp.ClientSession(base_url=console_base) as http:
        _, reporter = await register(http, f"ola-{secrets.token_hex(4)}@example.com", "Ola")
        target, _ = await register(http, f"tim-{secrets.token_hex(4)}@example.com", "Tim")
        async with http.post("/reports", json={"user_id": target, "reason": "spam"}, headers=reporter) as resp:
            assert resp.status == 201, await resp.text()
    admin = await open_console(module_browser, console_base, ADMIN_EMAIL, PHONE)
    page = admin.page
    report = page.get_by_role("article").filter(has=page.get_by_role("heading", name="spam: Tim"))
    await report.get_by_role("button", name="Warn").click()
    dialog = page.get_by_role("dialog", name="Warn the reported person: Tim")
    await dialog.get_by_label("Reason").fill("not sure yet")
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_be_hidden()
    await expect(report.get_by_role("button", name="Warn")).to_be_focused()
    await report.get_by_role("button", name="Dismiss").click()
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await page.reload()
    await expect(report).to_be_visible()  # still open
    await admin.context.close()
    assert not admin.errors, f"console errors: {admin.errors}"


async def test_a_normal_account_gets_only_a_refusal(module_browser: Browser, console_base: str) -> None:
    email = f"norm-{secrets.token_hex(4)}@example.com"
    async with aiohttp.ClientSession(base_url=console_base) as http:
        await register(http, email, "Norm")
    p = await open_console(module_browser, console_base, email)
    await expect(p.page.get_by_role("alert")).to_have_text("This account is not an admin: access refused.")
    await expect(p.page.get_by_role("heading", name="Open reports")).to_be_hidden()
    await expect(p.page.locator("#dashboard")).to_be_hidden()
    assert await p.page.locator("#charts *").count() == 0
    await check_screen(p.page, "admin-refused")
    # The refusal signed the session out: a reload does not get back in.
    await p.page.reload()
    await expect(p.page.get_by_role("button", name="Sign in")).to_be_visible()
    await expect(p.page.locator("#dashboard")).to_be_hidden()
    await p.context.close()
    assert not p.errors, f"console errors: {p.errors}"
