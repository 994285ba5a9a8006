"""The web app end to end: two people in two browser contexts against the
real server. Every screen is checked with axe-core (no serious or critical
violations) and photographed at desktop and phone widths; no flow may log a
console error or throw."""

from __future__ import annotations

import io
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from PIL import Image
from playwright.async_api import Browser, BrowserContext, FilePayload, Locator, Page, expect

from tests.browser.conftest import AXE, SCREENSHOTS

PASSWORD = "correct horse battery staple 42"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
XSS = "<img src=x onerror=alert(1)>"
AXE_SOURCE = AXE.read_text()


@dataclass
class Person:
    page: Page
    context: BrowserContext
    email: str
    name: str
    errors: list[str] = field(default_factory=list)


def png_file(name: str, colour: tuple[int, int, int]) -> FilePayload:
    out = io.BytesIO()
    Image.new("RGB", (240, 320), colour).save(out, "PNG")
    return {"name": name, "mimeType": "image/png", "buffer": out.getvalue()}


async def open_person(browser: Browser, base: str, name: str, viewport: dict[str, int] = DESKTOP) -> Person:
    context = await browser.new_context(base_url=base, viewport=viewport)  # type: ignore[arg-type]
    page = await context.new_page()
    person = Person(page, context, f"{name.lower()}-{secrets.token_hex(4)}@example.com", name)
    page.on("console", lambda msg: person.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: person.errors.append(str(exc)))
    page.on("dialog", lambda dialog: person.errors.append(f"dialog: {dialog.message}"))
    await page.goto("/")
    return person


async def sign_up(p: Person) -> None:
    await p.page.get_by_label("Email").fill(p.email)
    await p.page.get_by_label("Password").fill(PASSWORD)
    await p.page.get_by_role("button", name="Sign up", exact=True).click()
    await expect(p.page.get_by_label("Display name")).to_be_visible()


async def log_in(p: Person) -> None:
    await p.page.get_by_role("button", name="Log in instead").click()
    await p.page.get_by_label("Email").fill(p.email)
    await p.page.get_by_label("Password").fill(PASSWORD)
    await p.page.get_by_role("button", name="Log in", exact=True).click()
    await expect(p.page.get_by_role("button", name="Log out")).to_be_visible()


async def fill_profile(p: Person, gender: str, likes: str, lat: float) -> None:
    page = p.page
    await page.get_by_label("Display name").fill(p.name)
    await page.get_by_label("Birthdate").fill("1994-05-17")
    await page.get_by_label("Gender").select_option(gender)
    await page.get_by_label(likes.capitalize(), exact=True).check()
    await page.get_by_label("Bio").fill(f"{p.name} likes long walks and short queues.")
    await page.get_by_label("Interests").fill("hiking, jazz, board games")
    await page.get_by_label("Latitude").fill(str(lat))
    await page.get_by_label("Longitude").fill("13.4")
    await page.get_by_role("button", name="Save profile").click()
    await expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()


async def check_screen(page: Page, name: str, show: Locator | None = None) -> None:
    """axe-core finds no serious or critical violation; screenshots at both widths
    (with ``show`` scrolled to the top of the view at each)."""
    if not await page.evaluate("typeof axe !== 'undefined'"):
        await page.evaluate(AXE_SOURCE)  # evaluated by DevTools: the page's CSP stays strict
    result: dict[str, Any] = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    bad = [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, f"accessibility violations on {name}: {bad}"
    size = page.viewport_size
    for label, viewport in (("1280", DESKTOP), ("390", PHONE)):
        await page.set_viewport_size(viewport)  # type: ignore[arg-type]
        if show is not None:
            await show.evaluate("el => el.scrollIntoView({block: 'start'})")
        await page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"))
    if size:
        await page.set_viewport_size(size)


async def go_to(p: Person, tab: str) -> None:
    await p.page.get_by_role("navigation", name="Main").get_by_role("link", name=re.compile(f"^{tab}")).click()
    await expect(p.page.get_by_role("heading", level=1, name=tab)).to_be_visible()


def log_of(page: Page) -> Any:
    return page.get_by_role("log")


async def open_chat(p: Person, with_name: str) -> None:
    await go_to(p, "Chats")
    await p.page.get_by_role("link", name=re.compile(with_name)).click()
    await expect(p.page.get_by_role("heading", level=1, name=with_name)).to_be_visible()


async def send(p: Person, text: str) -> None:
    await p.page.get_by_label("Message", exact=True).fill(text)
    await p.page.get_by_role("button", name="Send", exact=True).click()


@pytest.fixture
async def pair(module_browser: Browser, module_web_base: str) -> AsyncIterator[tuple[Person, Person]]:
    """Two people on the module's server (one server and one browser for the
    module keep the suite quick; each test signs up its own accounts)."""
    ana = await open_person(module_browser, module_web_base, "Ana")
    ben = await open_person(module_browser, module_web_base, "Ben", PHONE)
    yield ana, ben
    for p in (ana, ben):
        await p.context.close()
    assert not ana.errors, f"console errors for Ana: {ana.errors}"
    assert not ben.errors, f"console errors for Ben: {ben.errors}"


async def matched_over_api(base: str, ana: Person, ben: Person) -> None:
    """Two accounts with profiles that like each other, made over HTTP."""
    async with aiohttp.ClientSession(base_url=base) as http:
        ids = {}
        for p, gender, likes in ((ana, "woman", "man"), (ben, "man", "woman")):
            async with http.post("/auth/register", json={"email": p.email, "password": PASSWORD}) as resp:
                assert resp.status == 201, await resp.text()
                pair = await resp.json()
            headers = {"Authorization": f"Bearer {pair['access_token']}"}
            ids[p.name] = (pair["user_id"], headers)
            profile = {"display_name": p.name, "birthdate": "1994-05-17", "gender": gender, "interested_in": [likes]}
            async with http.put("/me/profile", json=profile, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
        for me, other in (("Ana", "Ben"), ("Ben", "Ana")):
            body = {"user_id": ids[other][0], "action": "like"}
            async with http.post("/likes", json=body, headers=ids[me][1]) as resp:
                assert resp.status == 200, await resp.text()


async def test_two_people_match_and_chat_live(pair: tuple[Person, Person]) -> None:
    ana, ben = pair
    await check_screen(ana.page, "sign-up")
    await sign_up(ana)
    await sign_up(ben)
    await fill_profile(ana, "woman", "man", 52.52)
    await fill_profile(ben, "man", "woman", 52.50)

    await ana.page.get_by_label("Add photo").set_input_files(files=[png_file("ana.png", (214, 36, 91))])
    await expect(ana.page.get_by_role("img", name="Photo 1 (main)")).to_be_visible()
    await ana.page.get_by_label("Add photo").set_input_files(files=[png_file("ana2.png", (40, 90, 200))])
    await expect(ana.page.get_by_role("img", name="Photo 2")).to_be_visible()
    await ana.page.get_by_role("button", name="Move photo 2 earlier").click()
    await expect(ana.page.get_by_role("status").filter(has_text="moved to position 1")).to_be_attached()
    await check_screen(ana.page, "profile")

    # Ben finds Ana and likes her; then Ana finds Ben and likes him back.
    await go_to(ben, "Discover")
    card = ben.page.get_by_role("listitem").filter(has=ben.page.get_by_role("heading", name="Ana"))
    await expect(card.get_by_role("img", name=re.compile("Ana, photo 1 of 2"))).to_be_visible()
    await card.get_by_role("button", name="Next photo").click()
    await expect(card.get_by_role("img", name=re.compile("Ana, photo 2 of 2"))).to_be_visible()
    await check_screen(ben.page, "discover")
    await card.get_by_role("button", name="Like").click()
    await expect(card).to_have_count(0)
    await go_to(ben, "Matches")

    await go_to(ana, "Discover")
    card = ana.page.get_by_role("listitem").filter(has=ana.page.get_by_role("heading", name="Ben"))
    await card.get_by_role("button", name="Like").click()
    # The match appears live on Ben's open Matches screen, and as a notification.
    await expect(ben.page.get_by_role("link", name=re.compile("Ana"))).to_be_visible()
    await expect(ben.page.get_by_text("It's a match with Ana!")).to_be_visible()
    await expect(ana.page.get_by_text("It's a match with Ben!")).to_be_visible()
    await check_screen(ben.page, "matches")

    await open_chat(ana, "Ben")
    await open_chat(ben, "Ana")
    await ana.page.get_by_label("Message", exact=True).press_sequentially("Hi")
    await expect(ben.page.get_by_text("Ana is typing…")).to_be_visible()
    await ana.page.get_by_role("button", name="Send", exact=True).click()
    await expect(log_of(ben.page).get_by_text("Hi", exact=True)).to_be_visible()
    await expect(log_of(ana.page).get_by_text(re.compile("Seen"))).to_be_visible()  # Ben read it
    await send(ben, "Hello Ana, nice to meet you")
    await expect(log_of(ana.page).get_by_text("Hello Ana, nice to meet you")).to_be_visible()
    await expect(log_of(ben.page).get_by_text(re.compile("Seen"))).to_be_visible()

    # Markup in a message is text, never HTML.
    await send(ana, XSS)
    for p in (ana, ben):
        await expect(log_of(p.page).get_by_text(XSS, exact=True)).to_be_visible()
        assert await log_of(p.page).locator("img").count() == 0
    await check_screen(ben.page, "conversation")
    await go_to(ana, "Chats")
    await expect(ana.page.get_by_text(f"You: {XSS}")).to_be_visible()
    await check_screen(ana.page, "inbox")


async def test_twenty_messages_sent_while_offline_arrive_once_in_order(
    pair: tuple[Person, Person], module_web_base: str
) -> None:
    ana, ben = pair
    await matched_over_api(module_web_base, ana, ben)
    await log_in(ana)
    await log_in(ben)
    await open_chat(ana, "Ben")
    await open_chat(ben, "Ana")

    await ben.context.set_offline(True)
    await expect(ben.page.get_by_text("Reconnecting…")).to_be_visible()
    await check_screen(ben.page, "reconnecting")
    texts = [f"message {i:02d}" for i in range(1, 21)]
    for text in texts:
        await send(ana, text)
    await expect(log_of(ana.page).get_by_text("Sending…")).to_have_count(0)
    await ben.context.set_offline(False)
    bubbles = log_of(ben.page).locator(".bubble .text")
    await expect(bubbles).to_have_count(20)
    await expect(ben.page.get_by_text("Reconnecting…")).to_have_count(0)
    assert await bubbles.all_inner_texts() == texts


async def test_reload_keeps_the_session_and_pending_messages(pair: tuple[Person, Person], module_web_base: str) -> None:
    ana, ben = pair
    await matched_over_api(module_web_base, ana, ben)
    await log_in(ana)
    await log_in(ben)
    await open_chat(ben, "Ana")
    await open_chat(ana, "Ben")

    # Ana's socket cannot reach the server: her message stays pending.
    blocked = {"on": True}

    async def gate(ws: Any) -> None:
        if blocked["on"]:
            await ws.close()
        else:
            ws.connect_to_server()

    await ana.page.route_web_socket(re.compile(r"/ws$"), gate)
    await ana.page.reload()
    await expect(ana.page.get_by_role("heading", level=1, name="Ben")).to_be_visible()
    await send(ana, "still here after a reload")
    await expect(log_of(ana.page).get_by_text("Sending…")).to_be_visible()

    await ana.page.reload()  # the session and the pending message survive
    await expect(ana.page.get_by_role("heading", level=1, name="Ben")).to_be_visible()
    await expect(log_of(ana.page).get_by_text("still here after a reload")).to_be_visible()
    await expect(log_of(ana.page).get_by_text("Sending…")).to_be_visible()

    blocked["on"] = False  # the next reconnect goes through and sends it, once
    await expect(log_of(ben.page).get_by_text("still here after a reload")).to_have_count(1)
    await expect(log_of(ana.page).get_by_text("Sending…")).to_have_count(0)
    await ben.page.reload()
    await expect(log_of(ben.page).get_by_text("still here after a reload")).to_have_count(1)
