"""HTTP inputs that fuzzing once showed reaching PostgreSQL unchecked and
coming back as 500 ``internal`` (a NUL character in text, an integer beyond
int8): each must be refused with 400."""

from __future__ import annotations

from typing import Any

import pytest

from config.settings import Settings
from tests.auth_helpers import ACCOUNT_OVERRIDES, TEST_PASSWORD
from tests.chat_helpers import matched_pair
from tests.conftest import AppClient

INT8_OVERFLOW = 2**63


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(**ACCOUNT_OVERRIDES)


async def assert_refused(resp: Any) -> None:
    body = await resp.json()
    assert resp.status == 400, (resp.status, body)


async def test_register_with_nul_in_email(client: AppClient) -> None:
    resp = await client.post("/auth/register", json={"email": "a\x00b@example.com", "password": TEST_PASSWORD})
    await assert_refused(resp)


async def test_report_with_nul_in_details(client: AppClient) -> None:
    a, b, _ = await matched_pair(client)
    resp = await client.post(
        "/reports", json={"user_id": b.user_id, "reason": "spam", "details": "x\x00"}, headers=a.auth
    )
    await assert_refused(resp)


@pytest.mark.parametrize("body", [{"client_id": "a\x00b", "text": "hi"}, {"client_id": "c1", "text": "h\x00i"}])
async def test_send_message_with_nul(client: AppClient, body: dict[str, str]) -> None:
    a, _, match = await matched_pair(client)
    resp = await client.post(f"/conversations/{match['conversation_id']}/messages", json=body, headers=a.auth)
    await assert_refused(resp)


async def test_mark_read_beyond_int8(client: AppClient) -> None:
    a, _, match = await matched_pair(client)
    resp = await client.post(
        f"/conversations/{match['conversation_id']}/read", json={"up_to": INT8_OVERFLOW}, headers=a.auth
    )
    await assert_refused(resp)


async def test_messages_before_beyond_int8(client: AppClient) -> None:
    a, _, match = await matched_pair(client)
    resp = await client.get(
        f"/conversations/{match['conversation_id']}/messages?before={INT8_OVERFLOW}", headers=a.auth
    )
    await assert_refused(resp)
