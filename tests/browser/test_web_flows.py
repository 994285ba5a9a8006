"""The web app's less travelled flows, each in a real browser: photo drag,
delete, limit and progress; every profile field, geolocation and server
validation errors at their field; discovery filters and Pass; unmatch,
block and report; history paging, the unread divider, retrying a stuck
message, proximity nudges; and a first visit that asks nothing.

One server and one browser serve the whole module (each test makes its own
accounts); every test still fails on any console error."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.test_web_app import (
    DESKTOP,
    PASSWORD,
    PHONE,
    Person,
    check_screen,
    go_to,
    log_in,
    log_of,
    open_chat,
    png_file,
    send,
    sign_up,
)

HISTORY = 120  # messages seeded before opening a conversation: four pages of 30
UNREAD = 8


async def new_person(
    browser: Browser, base: str, name: str, viewport: dict[str, int] = DESKTOP, **options: Any
) -> Person:
    """A person in a browser context of their own (``options``: more context settings, e.g. ``timezone_id``)."""
    context = await browser.new_context(base_url=base, viewport=viewport, **options)  # type: ignore[arg-type]
    page = await context.new_page()
    person = Person(page, context, f"{name.lower()}-{secrets.token_hex(4)}@example.com", name)
    page.on("console", lambda msg: person.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: person.errors.append(str(exc)))
    page.on("dialog", lambda dialog: person.errors.append(f"dialog: {dialog.message}"))
    await page.goto("/")
    return person


class People:
    """The browser people of one test, closed and checked for console errors at the end."""

    def __init__(self, browser: Browser, base: str) -> None:
        self.browser, self.base, self.all = browser, base, list[Person]()

    async def open(self, name: str, viewport: dict[str, int] = DESKTOP, **options: Any) -> Person:
        person = await new_person(self.browser, self.base, name, viewport, **options)
        self.all.append(person)
        return person


@pytest.fixture
async def people(module_browser: Browser, module_web_base: str) -> AsyncIterator[People]:
    crowd = People(module_browser, module_web_base)
    yield crowd
    for p in crowd.all:
        await p.context.close()
    for p in crowd.all:
        assert not p.errors, f"console errors for {p.name}: {p.errors}"


class Api:
    """Accounts and actions over HTTP, to set the scene quickly."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.users: dict[str, tuple[str, dict[str, str]]] = {}

    async def call(self, method: str, path: str, who: str | None = None, **kw: Any) -> Any:
        headers = self.users[who][1] if who else {}
        async with self.http.request(method, path, headers=headers, **kw) as resp:
            assert resp.status < 300, f"{method} {path}: {resp.status} {await resp.text()}"
            return await resp.json() if resp.status != 204 else None

    async def account(self, name: str, email: str, gender: str, likes: list[str], **profile: Any) -> str:
        pair = await self.call("POST", "/auth/register", json={"email": email, "password": PASSWORD})
        self.users[name] = (pair["user_id"], {"Authorization": f"Bearer {pair['access_token']}"})
        body = {"display_name": name, "birthdate": "1994-05-17", "gender": gender, "interested_in": likes, **profile}
        await self.call("PUT", "/me/profile", name, json=body)
        return str(pair["user_id"])

    async def sign_in(self, name: str, email: str) -> str:
        """Act over HTTP as someone who signed up in the browser."""
        pair = await self.call("POST", "/auth/login", json={"email": email, "password": PASSWORD})
        self.users[name] = (pair["user_id"], {"Authorization": f"Bearer {pair['access_token']}"})
        return str(pair["user_id"])

    async def match(self, a: str, b: str) -> str:
        for me, other in ((a, b), (b, a)):
            await self.call("POST", "/likes", me, json={"user_id": self.users[other][0], "action": "like"})
        matches = await self.call("GET", "/matches", a)
        return str(next(m["conversation_id"] for m in matches["items"] if m["user"]["user_id"] == self.users[b][0]))

    async def say(self, who: str, cid: str, text: str) -> None:
        await self.call(
            "POST", f"/conversations/{cid}/messages", who, json={"client_id": secrets.token_hex(8), "text": text}
        )


@pytest.fixture
async def api(module_web_base: str) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(base_url=module_web_base) as http:
        yield Api(http)


def expect_refusals(p: Person, *statuses: int) -> None:
    """Chromium itself logs each refused request (not the app): drop exactly
    those the test provoked, so any other console error still fails it."""
    for status in statuses:
        line = next(
            e
            for e in p.errors
            if e.startswith(f"Failed to load resource: the server responded with a status of {status} ")
        )
        p.errors.remove(line)


async def photo_ids(page: Page) -> list[str]:
    srcs = await page.locator(".photo-grid img").evaluate_all("els => els.map(e => e.getAttribute('src'))")
    return [re.search(r"/photos/([^/?]+)/thumb", s).group(1) for s in srcs]  # type: ignore[union-attr]


async def test_photos_drag_delete_limit_and_upload_progress(people: People, api: Api) -> None:
    ana = await people.open("Ana")
    await api.account("Ana", ana.email, "woman", ["man"])
    await log_in(ana)
    page = ana.page
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Profile").click()
    await expect(page.get_by_role("heading", level=1, name="Your profile")).to_be_visible()
    add = page.get_by_label("Add photo")

    # A slow upload shows its progress.
    async def slow(route: Any) -> None:
        await page.wait_for_timeout(700)
        await route.continue_()

    await page.route("**/me/photos", slow)
    await add.set_input_files(files=[png_file("p1.png", (200, 30, 90))])
    await expect(page.get_by_text(re.compile(r"Uploading… \d+%"))).to_be_visible()
    await expect(page.get_by_role("img", name="Photo 1 (main)")).to_be_visible()
    await page.unroute("**/me/photos")
    for n, colour in enumerate(((30, 90, 200), (30, 160, 60), (230, 180, 20), (120, 40, 160), (20, 20, 20)), 2):
        await add.set_input_files(files=[png_file(f"p{n}.png", colour)])
        await expect(page.get_by_role("img", name=f"Photo {n}", exact=True)).to_be_visible()

    # Six: the limit is explained and the picker is off, rather than an upload failing.
    await expect(page.get_by_text("You have 6 photos, the most a profile can hold.")).to_be_visible()
    await expect(add).to_be_disabled()
    await page.get_by_role("heading", name="Photos").scroll_into_view_if_needed()
    await check_screen(page, "photos-full")

    # Drag the third photo onto the first: it becomes the main one, and stays so.
    before = await photo_ids(page)
    await page.locator(".photo-tile").nth(2).drag_to(page.locator(".photo-tile").nth(0))
    await expect(page.get_by_role("status").filter(has_text="moved to position 1 of 6")).to_be_attached()
    after = await photo_ids(page)
    assert after == [before[2], before[0], before[1], *before[3:]]
    assert [p["photo_id"] for p in (await api.call("GET", "/me/photos", "Ana"))["items"]] == after

    # Delete the main photo: five left, room for another.
    await page.get_by_role("button", name="Delete photo 1").click()
    await expect(page.locator(".photo-grid img")).to_have_count(5)
    assert await photo_ids(page) == after[1:]
    await expect(page.get_by_text("You have 6 photos")).to_have_count(0)
    await expect(add).to_be_enabled()


async def test_profile_fields_location_and_errors_at_their_field(people: People, api: Api) -> None:
    taken = f"taken-{secrets.token_hex(4)}@example.com"
    await api.account("Taken", taken, "man", ["woman"])
    ana = await people.open("Ana", PHONE)
    page = ana.page

    # Sign-up with a taken email: the error is at Email.
    await page.get_by_label("Email").fill(taken)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign up", exact=True).click()
    await expect(page.locator("#email-error")).to_contain_text("already exists")
    await expect(page.get_by_label("Email")).to_have_attribute("aria-invalid", "true")
    # Log in with a wrong password: the error is at Password.
    await page.get_by_role("button", name="Log in instead").click()
    await page.get_by_label("Email").fill(taken)
    await page.get_by_label("Password").fill(PASSWORD + "!")
    await page.get_by_role("button", name="Log in", exact=True).click()
    await expect(page.locator("#password-error")).to_have_text("Wrong email or password")
    await check_screen(page, "log-in-error")
    await page.get_by_role("button", name="Create an account").click()
    await sign_up(ana)

    # Server validation errors land next to their field.
    await page.get_by_label("Display name").fill("Ana")
    await page.get_by_label("Birthdate").fill("2015-03-01")
    await page.get_by_label("Man", exact=True).check()
    await page.get_by_role("button", name="Save profile").click()
    await expect(page.locator("#birthdate-error")).to_have_text("You must be at least 18")
    await expect(page.get_by_label("Birthdate")).to_have_attribute("aria-invalid", "true")
    await page.get_by_label("Birthdate").fill("1990-02-03")
    await page.get_by_label("Latitude").fill("95")  # typed by hand, out of range
    await page.get_by_label("Longitude").fill("13.4")
    await page.get_by_role("button", name="Save profile").click()
    await expect(page.locator("#lat-error")).to_have_text("Latitude must be between -90 and 90")
    await check_screen(page, "profile-error")

    # The browser's location, once the person allows it.
    await ana.context.grant_permissions(["geolocation"])
    await ana.context.set_geolocation({"latitude": 48.8566, "longitude": 2.3522})
    await page.get_by_role("button", name="Use my current location").click()
    await expect(page.get_by_label("Latitude")).to_have_value("48.8566")
    await expect(page.get_by_label("Longitude")).to_have_value("2.3522")

    await page.get_by_label("Gender").select_option("nonbinary")
    await page.get_by_label("Woman", exact=True).check()
    await page.get_by_label("Bio").fill("Line one.\nLine two <b>not bold</b>.")
    await page.get_by_label("Interests").fill("climbing, jazz")
    await page.get_by_role("button", name="Save profile").click()
    await expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
    await expect(page.locator(".field .error")).to_have_count(0)

    await page.reload()
    await expect(page.get_by_label("Display name")).to_have_value("Ana")
    await expect(page.get_by_label("Birthdate")).to_have_value("1990-02-03")
    await expect(page.get_by_label("Gender")).to_have_value("nonbinary")
    await expect(page.get_by_label("Man", exact=True)).to_be_checked()
    await expect(page.get_by_label("Woman", exact=True)).to_be_checked()
    await expect(page.get_by_label("Nonbinary", exact=True)).not_to_be_checked()
    await expect(page.get_by_label("Bio")).to_have_value("Line one.\nLine two <b>not bold</b>.")
    await expect(page.get_by_label("Interests")).to_have_value("climbing, jazz")
    await expect(page.get_by_label("Latitude")).to_have_value("48.8566")
    await expect(page.get_by_label("Longitude")).to_have_value("2.3522")
    expect_refusals(ana, 409, 401, 400, 400)


async def test_discover_filters_change_the_results_and_pass_removes_a_card(people: People, api: Api) -> None:
    tag = secrets.token_hex(3)  # the module's server holds other tests' people too
    ana = await people.open("Ana")
    await api.account("Ana", ana.email, "woman", ["man", "nonbinary"], location={"lat": 52.52, "lon": 13.40})
    here, far = {"lat": 52.50, "lon": 13.40}, {"lat": 48.14, "lon": 11.58}
    for name, gender, born, where in (
        ("Ben", "man", "1996-01-10", here),
        ("Carl", "man", "1979-06-01", far),
        ("Dee", "nonbinary", "1998-09-09", far),
    ):
        await api.account(
            name,
            f"{name.lower()}-{tag}@example.com",
            gender,
            ["woman"],
            location=where,
            birthdate=born,
            display_name=f"{name} {tag}",
        )
    await log_in(ana)
    await go_to(ana, "Discover")
    page = ana.page
    ours = page.locator(".cards h2", has_text=tag)

    async def shows(*names: str) -> None:
        for name in names:
            await expect(page.locator(".cards h2", has_text=f"{name} {tag}")).to_have_count(1)
        await expect(ours).to_have_count(len(names))

    await shows("Ben", "Carl", "Dee")
    await page.get_by_text("Filters", exact=True).click()
    await page.get_by_label("Min age").fill("40")
    await page.get_by_role("button", name="Apply filters").click()
    await shows("Carl")
    await page.get_by_label("Min age").fill("")
    await page.get_by_label("Show").select_option("nonbinary")
    await page.get_by_role("button", name="Apply filters").click()
    await shows("Dee")
    await page.get_by_label("Show").select_option("")
    await page.get_by_label("Within (km)").fill("50")
    await page.get_by_role("button", name="Apply filters").click()
    await shows("Ben")
    await check_screen(page, "discover-filtered")

    card = page.get_by_role("listitem").filter(has=page.get_by_role("heading", name=f"Ben {tag}"))
    await card.get_by_role("button", name="Pass").click()
    await expect(card).to_have_count(0)
    await page.get_by_label("Within (km)").fill("")
    await page.get_by_role("button", name="Apply filters").click()
    await shows("Carl", "Dee")  # Ben, passed, does not come back


async def test_unmatch_block_and_report_end_the_conversation_for_both(people: People, api: Api) -> None:
    ana, ben = await people.open("Ana"), await people.open("Ben", PHONE)
    await api.account("Ana", ana.email, "woman", ["man"])
    await api.account("Ben", ben.email, "man", ["woman"])
    await api.account("Carl", f"carl-{secrets.token_hex(4)}@example.com", "man", ["woman"])
    await api.match("Ana", "Ben")
    await api.match("Ana", "Carl")
    await log_in(ana)
    await log_in(ben)
    await open_chat(ana, "Ben")
    await open_chat(ben, "Ana")
    actions = ana.page.get_by_label("Conversation actions")

    # Report: a form to confirm, then a thank-you.
    await actions.click()
    await ana.page.get_by_role("button", name="Report").click()
    await ana.page.get_by_label("Reason").select_option("spam")
    await ana.page.get_by_label("Details (optional)").fill("Sends links")
    await ana.page.get_by_role("button", name="Send report").click()
    await expect(ana.page.get_by_text("Your report was sent")).to_be_visible()

    # Unmatch asks first; Cancel keeps everything.
    await actions.click()
    await ana.page.get_by_role("button", name="Unmatch").click()
    confirm = ana.page.get_by_role("alertdialog", name="Unmatch Ben?")
    await expect(confirm).to_be_visible()
    await check_screen(ana.page, "confirm-unmatch")
    await confirm.get_by_role("button", name="Cancel").click()
    await expect(confirm).to_have_count(0)
    await actions.click()
    await ana.page.get_by_role("button", name="Unmatch").click()
    await ana.page.get_by_role("button", name="Yes, unmatch").click()
    await expect(ana.page.get_by_role("heading", level=1, name="Chats")).to_be_visible()
    await expect(ana.page.get_by_role("link", name=re.compile("Ben"))).to_have_count(0)
    # Ben, in the conversation, learns live that it ended.
    await expect(ben.page.get_by_text("This conversation has ended.")).to_be_visible()
    await expect(ben.page.get_by_label("Message", exact=True)).to_be_disabled()
    await go_to(ben, "Matches")
    await expect(ben.page.get_by_text("No matches yet.")).to_be_visible()

    # Block, from Carl's conversation, also asks first; Carl loses the match too.
    await open_chat(ana, "Carl")
    await actions.click()
    await ana.page.get_by_role("button", name="Block").click()
    await ana.page.get_by_role("button", name="Yes, block").click()
    await expect(ana.page.get_by_role("heading", level=1, name="Chats")).to_be_visible()
    await expect(ana.page.get_by_text("No conversations yet.")).to_be_visible()
    assert (await api.call("GET", "/matches", "Carl"))["items"] == []
    assert (await api.call("GET", "/conversations", "Carl"))["items"] == []


async def test_history_paging_divider_retry_and_nudge(people: People, api: Api) -> None:
    ana, ben = await people.open("Ana"), await people.open("Ben")
    await api.account("Ana", ana.email, "woman", ["man"])
    await api.account("Ben", ben.email, "man", ["woman"])
    cid = await api.match("Ana", "Ben")
    for i in range(1, HISTORY - UNREAD + 1):
        await api.say("Ana", cid, f"ana {i:03d}")
    for i in range(1, UNREAD + 1):
        await api.say("Ben", cid, f"ben {i:03d}")
    await log_in(ana)
    await log_in(ben)
    await open_chat(ben, "Ana")
    await open_chat(ana, "Ben")
    log = log_of(ana.page)

    # The unread divider sits right above Ben's first unread message.
    divider = log.get_by_role("separator")
    await expect(divider).to_have_text("New messages")
    assert await divider.evaluate("d => d.nextElementSibling.querySelector('.text').textContent") == "ben 001"

    # Scrolling up loads older pages, and what was on screen stays put.
    bubbles = log.locator(".bubble[data-id]")
    await expect(bubbles).to_have_count(30)
    for loaded in (60, 90, 120):
        anchor = await log.evaluate(
            "el => { el.scrollTop = 0; const b = el.querySelector('.bubble[data-id]');"
            " return [b.dataset.id, b.getBoundingClientRect().top]; }"
        )
        await expect(bubbles).to_have_count(loaded)
        await expect(log.get_by_text("Loading earlier messages…")).to_have_count(0)
        top = await log.evaluate(f"el => el.querySelector('[data-id=\"{anchor[0]}\"]').getBoundingClientRect().top")
        assert abs(top - anchor[1]) < 3, (loaded, top, anchor)
    await expect(log.get_by_text("ana 001", exact=True)).to_be_attached()

    # Offline: the message waits; Retry says why; back online it goes out once.
    await ana.context.set_offline(True)
    await expect(ana.page.get_by_text("Reconnecting…")).to_be_visible()
    await send(ana, "sent while offline")
    retry = log.get_by_role("button", name="Retry")
    await retry.click()
    await expect(log.get_by_text(re.compile("You are offline"))).to_be_visible()
    await check_screen(ana.page, "message-not-sent")
    await ana.context.set_offline(False)
    await expect(log_of(ben.page).get_by_text("sent while offline")).to_have_count(1)
    await expect(retry).to_have_count(0)

    # The socket cannot connect (the network is up): Retry sends over HTTP.
    async def refuse(ws: Any) -> None:
        await ws.close()

    await ana.page.route_web_socket(re.compile(r"/ws$"), refuse)
    await ana.page.reload()
    await expect(ana.page.get_by_role("heading", level=1, name="Ben")).to_be_visible()
    await send(ana, "sent by retry")
    await expect(log.get_by_text("Sending…")).to_be_visible()
    await retry.click()
    await expect(log_of(ben.page).get_by_text("sent by retry")).to_have_count(1)
    await expect(log.get_by_text("Sending…")).to_have_count(0)
    await expect(log.locator(".bubble.mine").last).to_contain_text("sent by retry")

    # A proximity nudge reaches Ben's open app as a notification.
    login = await api.call("POST", "/auth/login", json={"email": ben.email, "password": PASSWORD})
    mine, other = f"tok_{secrets.token_hex(8)}", f"tok_{secrets.token_hex(8)}"
    bearer = {"Authorization": f"Bearer {login['access_token']}"}
    async with api.http.post("/session", json={"ble_token": mine, "interests": ["devops"]}, headers=bearer) as resp:
        assert resp.status == 201, await resp.text()
        secret = (await resp.json())["session_id"]
    await api.call("POST", "/session", json={"ble_token": other, "interests": ["coding"]})
    body = {"own_token": mine, "detected_token": other}
    async with api.http.post("/match", json=body, headers={"Authorization": f"Bearer {secret}"}) as resp:
        assert (await resp.json())["nudge_sent"] is True
    await expect(ben.page.get_by_text("Someone nearby shares your interest in tech.")).to_be_visible()
    await check_screen(ben.page, "nudge")


async def test_a_first_visit_asks_for_no_refresh_and_a_stale_hint_is_forgotten(people: People) -> None:
    ana = await people.open("Ana")
    refreshes: list[int] = []
    ana.page.on("response", lambda r: refreshes.append(r.status) if r.url.endswith("/auth/refresh") else None)
    await ana.page.reload()
    await expect(ana.page.get_by_role("button", name="Sign up", exact=True)).to_be_visible()
    assert refreshes == []

    await sign_up(ana)
    await ana.page.reload()  # the hint says a session exists: it is renewed
    await expect(ana.page.get_by_label("Display name")).to_be_visible()
    assert refreshes == [200]

    # The cookie is gone (expired, or ended on another device): one quiet
    # refusal, then the hint is forgotten and later visits ask nothing.
    await ana.context.clear_cookies()
    await ana.page.reload()
    await expect(ana.page.get_by_role("button", name="Sign up", exact=True)).to_be_visible()
    assert refreshes == [200, 401]
    assert await ana.page.evaluate("localStorage.getItem('px.session')") is None
    await ana.page.reload()
    await expect(ana.page.get_by_role("button", name="Sign up", exact=True)).to_be_visible()
    assert refreshes == [200, 401]
    expect_refusals(ana, 401)
