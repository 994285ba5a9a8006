"""Compatibility in the web app, in a real browser against the real server:
the assessment offered right after the first profile save (and skippable),
answered to a result that then shows on the profile page, a retake refused
within the day; values and preferences in the profile editor, errors at
their field and persisted; today's suggestions with their score and
reasons, Like and Pass; the score on discovery cards.

Every new screen is checked with axe-core and photographed at 1280 and
390 px; no console error may appear except the refusals a test provokes."""

from __future__ import annotations

import re
import secrets

import aiohttp
from playwright.async_api import Locator, Page, expect

from tests.browser import test_web_flows
from tests.browser.test_web_app import check_screen, fill_profile, go_to, log_in, png_file, sign_up
from tests.browser.test_web_flows import Api, People, expect_refusals

# The flows' fixtures: one server and one browser for the module, people and HTTP set-up.
people = test_web_flows.people
api = test_web_flows.api

STATEMENTS = 18
MIDDLE = 4  # all answers in the middle: both dimensions at 4.0, "high" from the midpoint up
INTERESTS = ["hiking", "jazz", "board games"]


async def answer_every_statement(page: Page, answer: int) -> None:
    statements = page.locator("fieldset.statement")
    await expect(statements).to_have_count(STATEMENTS)
    for i in range(STATEMENTS):
        await statements.nth(i).get_by_role("radio", name=re.compile(rf"^{answer}\b")).check()


async def test_assessment_offered_after_the_first_save_skipped_then_taken(people: People, api: Api) -> None:
    ana = await people.open("Ana", timezone_id="Asia/Tokyo")
    page = ana.page
    await sign_up(ana)
    # A new profile starts in the browser's time zone.
    await expect(page.get_by_label("Time zone")).to_have_value("Asia/Tokyo")
    await fill_profile(ana, "nonbinary", "nonbinary", 35.68)

    # The first save offers the assessment as the next step, focused; it can be skipped.
    offer = page.get_by_role("region", name="How do you relate?")
    await expect(offer.get_by_text("Next step · optional")).to_be_visible()
    await expect(offer.get_by_role("heading", name="How do you relate?")).to_be_focused()
    await expect(offer.get_by_role("link", name="Take the assessment")).to_have_attribute("href", "#/assessment")
    await check_screen(page, "onboarding-offer")
    await offer.get_by_role("button", name="Skip for now").click()
    await expect(offer).to_have_count(0)
    await api.sign_in("Ana", ana.email)
    assert (await api.call("GET", "/me", "Ana"))["profile"]["time_zone"] == "Asia/Tokyo"

    # Today has no one yet; it says so, and invites to the assessment.
    await go_to(ana, "Today")
    empty = page.locator(".empty-state")
    await expect(empty).to_contain_text("No suggestions today — check back tomorrow")
    await expect(page.get_by_text(re.compile(r"^Your suggestions for \w+"))).to_be_visible()
    await check_screen(page, "today-empty")
    await empty.get_by_role("link", name="Take the assessment").click()

    # The statements: radio groups named by the statement, ends labelled.
    await expect(page.get_by_role("heading", level=1, name="How do you relate?")).to_be_visible()
    await expect(page.get_by_role("link", name="Skip for now")).to_have_attribute("href", "#/today")
    group = page.get_by_role("group", name="I need a lot of reassurance that a partner cares about me.")
    await expect(group.get_by_role("radio")).to_have_count(7)
    await expect(group.get_by_role("radio", name="1, Strongly disagree")).to_be_attached()
    await expect(group.get_by_role("radio", name="7, Strongly agree")).to_be_attached()

    # Submitting early: nothing sent, every unanswered statement flagged, the first one focused.
    await group.get_by_role("radio", name="5", exact=True).check()
    await expect(page.get_by_text("1 of 18 answered")).to_be_visible()
    await page.get_by_role("button", name="See my result").click()
    await expect(page.get_by_role("alert")).to_have_text("Answer every statement to see your result (17 left).")
    await expect(page.locator("fieldset.statement.missing")).to_have_count(17)
    await expect(page.locator("fieldset.statement").first.get_by_role("radio").first).to_be_focused()
    await check_screen(page, "assessment", show=group)

    await answer_every_statement(page, MIDDLE)
    await expect(page.get_by_text("18 of 18 answered")).to_be_visible()
    await expect(page.locator("fieldset.statement.missing")).to_have_count(0)
    await page.get_by_role("button", name="See my result").click()
    heading = page.get_by_role("heading", level=1, name="Your result")
    await expect(heading).to_be_focused()
    result = page.get_by_role("region", name="Your result")
    await expect(result.get_by_text("Fearful-avoidant", exact=True)).to_be_visible()
    await expect(result.get_by_text("4.0 of 7, high")).to_have_count(2)
    await expect(result.get_by_text("You may want closeness and feel wary of it at the same time.")).to_be_visible()
    await expect(result.get_by_text(re.compile("^Only you can see this"))).to_be_visible()
    await check_screen(page, "assessment-result")
    stored = await api.call("GET", "/me/assessment/result", "Ana")
    assert (stored["style"], stored["anxiety"], stored["avoidance"]) == ("fearful_avoidant", 4.0, 4.0)

    # The result on the profile page, with Retake.
    await page.get_by_role("link", name="Back to your profile").click()
    card = page.get_by_role("region", name="How you relate")
    await expect(card.get_by_text("Fearful-avoidant", exact=True)).to_be_visible()
    await expect(card.get_by_text("Steady, patient people often help the push and pull settle.")).to_be_visible()
    await expect(card.get_by_text(re.compile("once a day: next after"))).to_be_visible()
    await check_screen(page, "profile-assessment", show=card)

    # A retake the same day: answered in full, then refused at the button, with why.
    await card.get_by_role("link", name="Retake").click()
    await expect(page.get_by_role("link", name="Keep my current result")).to_be_visible()
    await answer_every_statement(page, 1)
    await page.get_by_role("button", name="See my result").click()
    await expect(page.locator("#assessment-error")).to_contain_text("You can retake the assessment once a day.")
    await expect(page.locator("#assessment-error")).to_contain_text("Your next chance is after")
    await expect(page.get_by_role("button", name="See my result")).to_have_attribute(
        "aria-describedby", "assessment-error"
    )
    assert (await api.call("GET", "/me/assessment/result", "Ana"))["style"] == "fearful_avoidant"
    expect_refusals(ana, 429)


async def test_profile_editor_saves_values_and_preferences(people: People, api: Api) -> None:
    ana = await people.open("Ana", timezone_id="Europe/Berlin")
    await api.account("Ana", ana.email, "woman", ["man"])
    await log_in(ana)
    page = ana.page
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Profile").click()
    await expect(page.get_by_role("heading", level=1, name="Your profile")).to_be_visible()
    values = page.get_by_role("group", name="Values")
    await expect(values.get_by_label("Family plans")).to_have_value("")  # "Prefer not to say"
    await expect(page.get_by_label("Crossed paths")).to_be_checked()

    await values.get_by_label("Family plans").select_option("open_to_children")
    await values.get_by_label("Smoking").select_option("never")
    await values.get_by_label("Drinking").select_option("socially")
    await page.get_by_label("Min age").fill("40")
    await page.get_by_label("Max age").fill("30")
    save = page.get_by_role("button", name="Save profile")
    await save.click()
    await expect(page.locator("#age_min-error")).to_have_text("Min age must not exceed Max age")
    await expect(page.get_by_label("Min age")).to_have_attribute("aria-invalid", "true")

    # Saved in UTC (the server's default): the browser's zone is suggested, not imposed.
    zone = page.get_by_label("Time zone")
    await expect(zone).to_have_value("UTC")
    await page.get_by_label("Max age").fill("45")
    await zone.fill("Mars/Olympus_Mons")
    await save.click()
    await expect(page.locator("#time_zone-error")).to_contain_text("Time zone must be an IANA time zone name")
    await expect(zone).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#age_min-error")).to_have_count(0)
    await zone.fill("UTC")
    await page.get_by_role("button", name="Use Europe/Berlin").click()
    await expect(zone).to_have_value("Europe/Berlin")
    await page.get_by_label("Max distance (km)").fill("30")
    await page.get_by_label("Crossed paths").uncheck()
    await save.click()
    await expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
    await expect(page.locator(".field .error")).to_have_count(0)
    await check_screen(page, "profile-preferences", show=values)

    await page.reload()
    await expect(values.get_by_label("Family plans")).to_have_value("open_to_children")
    await expect(values.get_by_label("Smoking")).to_have_value("never")
    await expect(values.get_by_label("Drinking")).to_have_value("socially")
    await expect(values.get_by_label("Importance of faith")).to_have_value("")
    await expect(page.get_by_label("Min age")).to_have_value("40")
    await expect(page.get_by_label("Max age")).to_have_value("45")
    await expect(page.get_by_label("Max distance (km)")).to_have_value("30")
    await expect(zone).to_have_value("Europe/Berlin")
    await expect(page.get_by_label("Crossed paths")).not_to_be_checked()
    profile = (await api.call("GET", "/me", "Ana"))["profile"]
    assert {k: profile[k] for k in ("family_plans", "smoking", "drinking", "faith_importance")} == {
        "family_plans": "open_to_children",
        "smoking": "never",
        "drinking": "socially",
        "faith_importance": None,
    }
    assert (profile["age_min"], profile["age_max"], profile["max_distance_km"]) == (40, 45, 30)
    assert (profile["time_zone"], profile["crossed_paths"]) == ("Europe/Berlin", False)

    # "Prefer not to say" clears an answer; the rest stays.
    await values.get_by_label("Smoking").select_option("")
    await save.click()
    await expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
    profile = (await api.call("GET", "/me", "Ana"))["profile"]
    assert (profile["smoking"], profile["family_plans"], profile["age_max"]) == (None, "open_to_children", 45)
    expect_refusals(ana, 400, 400)


async def test_today_shows_suggestions_with_score_and_reasons_and_like_pass_remove_them(
    people: People, api: Api
) -> None:
    tag = secrets.token_hex(3)
    near = {"location": {"lat": 52.50, "lon": 13.4}}
    # The others exist before Ana's list is made (on her first visit today).
    await api.account(f"Ben {tag}", f"ben-{tag}@example.com", "man", ["woman"], interests=INTERESTS, **near)
    await api.account(f"Carl {tag}", f"carl-{tag}@example.com", "man", ["woman"], interests=["hiking"], **near)
    await api.account(f"Dee {tag}", f"dee-{tag}@example.com", "man", ["woman"], interests=["opera"])
    for n, colour in enumerate(((40, 90, 200), (30, 160, 60)), 1):
        photo = aiohttp.FormData()
        photo.add_field(
            "file", png_file(f"ben{n}.png", colour)["buffer"], filename=f"ben{n}.png", content_type="image/png"
        )
        await api.call("POST", "/me/photos", f"Ben {tag}", data=photo)
    ana = await people.open("Ana")
    await api.account("Ana", ana.email, "woman", ["man"], interests=INTERESTS, location={"lat": 52.52, "lon": 13.4})
    await api.call("POST", "/likes", f"Ben {tag}", json={"user_id": api.users["Ana"][0], "action": "like"})
    await log_in(ana)
    page = ana.page

    # Discovery cards carry the score and the top reason, small.
    await go_to(ana, "Discover")
    ben_card = page.get_by_role("listitem").filter(has=page.get_by_role("heading", name=f"Ben {tag}"))
    await expect(ben_card.locator(".compat")).to_have_text(re.compile(r"^\d{1,3}% compatible · 3 shared interests"))

    await go_to(ana, "Today")
    await expect(page.get_by_text(re.compile(r"^Your suggestions for"))).to_be_visible()
    cards = page.locator(".cards > li")
    await expect(cards).to_have_count(3)

    def card_of(name: str) -> Locator:
        return page.get_by_role("listitem").filter(has=page.get_by_role("heading", name=f"{name} {tag}"))

    ben, carl, dee = card_of("Ben"), card_of("Carl"), card_of("Dee")
    for card in (ben, carl, dee):
        await expect(card.get_by_text(re.compile(r"^\d{1,3}% compatible$"))).to_be_visible()
    reasons = ben.get_by_role("list", name="Why you might get along")
    await expect(reasons.get_by_role("listitem").first).to_have_text("3 shared interests: board games, hiking, jazz")
    await expect(ben.get_by_text("2 km away", exact=True)).to_have_count(1)
    await expect(ben.get_by_role("img", name=f"Ben {tag}, photo 1 of 2")).to_be_visible()
    await ben.get_by_role("button", name="Next photo").click()
    await expect(ben.get_by_role("img", name=f"Ben {tag}, photo 2 of 2")).to_be_visible()
    await expect(carl.get_by_role("listitem").filter(has_text="1 shared interest: hiking")).to_be_visible()
    await expect(page.get_by_role("link", name="Take the assessment")).to_be_visible()
    await check_screen(page, "today")

    await carl.get_by_role("button", name="Pass").click()
    await expect(carl).to_have_count(0)
    await ben.get_by_role("button", name="Like").click()
    await expect(ben).to_have_count(0)
    await expect(page.get_by_text(f"It's a match with Ben {tag}!")).to_be_visible()
    await dee.get_by_role("button", name="Like").click()
    await expect(cards).to_have_count(0)
    await expect(page.get_by_text("That's everyone for today — check back tomorrow.")).to_be_visible()
    matched = {m["user"]["user_id"] for m in (await api.call("GET", "/matches", "Ana"))["items"]}
    assert matched == {api.users[f"Ben {tag}"][0]}

    # The list is the day's: who was acted on stays gone after a reload.
    await page.reload()
    await expect(page.get_by_text("No suggestions today — check back tomorrow.")).to_be_visible()
