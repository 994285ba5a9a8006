"""The Account page in a real browser: download a copy of your data (export,
progress, the zip saved through the bearer-authenticated fetch, the 24-hour
limit) and delete the account (a wrong password at its field, a confirm
step, then signed out for good).

One server and one browser serve the module; the page is checked with
axe-core and photographed at 1280 and 390 px; no console error may appear
except the refusals the test provokes on purpose."""

from __future__ import annotations

import io
import secrets
import zipfile
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.test_web_app import PASSWORD, Person, check_screen, open_person, png_file, sign_up
from tests.browser.test_web_flows import expect_refusals

EXPORT_READY_TIMEOUT_MS = 30_000
WRONG_PASSWORD = "not my password at all 99"


@pytest.fixture
async def ana(module_browser: Browser, module_web_base: str) -> AsyncIterator[Person]:
    person = await open_person(module_browser, module_web_base, "Ana")
    yield person
    await person.context.close()
    assert not person.errors, f"console errors: {person.errors}"


async def set_up_profile(p: Person) -> None:
    page = p.page
    await page.get_by_label("Display name").fill(p.name)
    await page.get_by_label("Birthdate").fill("1994-05-17")
    await page.get_by_label("Gender").select_option("woman")
    await page.get_by_label("Man", exact=True).check()
    await page.get_by_role("button", name="Save profile").click()
    await expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
    await page.get_by_label("Add photo").set_input_files(png_file("me.png", (200, 80, 120)))
    await expect(page.locator(".photo-grid img")).to_have_count(1)


async def open_account(page: Page) -> None:
    await page.get_by_role("link", name="Your data and account").click()
    await expect(page.get_by_role("heading", level=1, name="Your data and account")).to_be_visible()


async def test_export_download_then_delete_account(ana: Person) -> None:
    page = ana.page
    ana.email = f"ana-{secrets.token_hex(4)}@example.com"
    await sign_up(ana)
    await set_up_profile(ana)
    await open_account(page)
    await check_screen(page, "account")

    export = page.get_by_role("region", name="Download my data")
    await export.get_by_label("Current password").fill(PASSWORD)
    await export.get_by_role("button", name="Prepare my data").click()
    download_button = export.get_by_role("button", name="Download the zip file")
    await expect(download_button).to_be_visible(timeout=EXPORT_READY_TIMEOUT_MS)
    await expect(download_button).to_be_focused()
    await expect(export.get_by_role("status")).to_contain_text("Your data is ready")
    async with page.expect_download() as info:
        await download_button.click()
    download = await info.value
    assert download.suggested_filename == "proximity-my-data.zip"
    path = await download.path()
    assert path is not None
    with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as zf:
        names = zf.namelist()
    assert "README.txt" in names and "account.json" in names, names
    assert any(n.startswith("photos/") for n in names), names
    await expect(export.get_by_text("Downloaded.")).to_be_visible()

    # A second export the same day: refused, with when the next one is possible.
    await page.reload()
    await expect(page.get_by_role("heading", level=1, name="Your data and account")).to_be_visible()
    export = page.get_by_role("region", name="Download my data")
    await export.get_by_label("Current password").fill(PASSWORD)
    await export.get_by_role("button", name="Prepare my data").click()
    await expect(export.get_by_role("alert")).to_contain_text("The next one is possible after")
    await expect(export.get_by_label("Current password")).to_have_attribute("aria-invalid", "true")
    expect_refusals(ana, 429)

    # Deleting: a wrong password shows the server's error at the field.
    delete = page.get_by_role("region", name="Delete my account")
    field = delete.get_by_label("Current password")
    await field.fill(WRONG_PASSWORD)
    await delete.get_by_role("button", name="Delete my account…").click()
    confirm = delete.get_by_role("button", name="Yes, delete my account")
    await expect(confirm).to_be_focused()
    await confirm.click()
    await expect(delete.locator("#delete-password-error")).to_have_text("Wrong password")
    await expect(field).to_have_attribute("aria-invalid", "true")
    await expect(field).to_have_attribute("aria-describedby", "delete-password-error")
    await expect(field).to_be_focused()
    expect_refusals(ana, 401)
    await check_screen(page, "account-error")

    # Cancel leaves everything as it was; then the right password, by keyboard.
    await field.fill(PASSWORD)
    await delete.get_by_role("button", name="Delete my account…").click()
    await delete.get_by_role("button", name="Cancel").click()
    await expect(confirm).to_be_hidden()
    await field.press("Enter")
    await expect(confirm).to_be_focused()
    await page.keyboard.press("Enter")

    # Signed out, back at the sign-in screen; the account cannot log in again.
    await expect(page.get_by_role("heading", name="Create your account")).to_be_visible()
    await expect(page.get_by_text("Your account has been deleted.")).to_be_visible()
    await page.get_by_role("button", name="Log in instead").click()
    await page.get_by_label("Email").fill(ana.email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in", exact=True).click()
    await expect(page.locator("#password-error")).to_contain_text("Wrong email or password")
    expect_refusals(ana, 401)
