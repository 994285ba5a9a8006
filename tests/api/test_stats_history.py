"""GET /stats/history: durable series, small counts hidden, and no hidden
cell recoverable from what is published."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import asyncpg
import pytest

from config.settings import Settings
from proximity_server.app import state as keys
from proximity_server.features.admin import protect_group, suppress
from tests.auth_helpers import ACCOUNT_OVERRIDES, register
from tests.conftest import ADMIN_TOKEN, AppClient, MakeClient
from tests.helpers import attempt_match, bearer, open_session

MIN = 3


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(**ACCOUNT_OVERRIDES, stats_min_count=MIN)


async def history(client: AppClient, **params: str) -> dict[str, Any]:
    resp = await client.get("/stats/history", params=params, headers=bearer(ADMIN_TOKEN))
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


def today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


async def test_series_count_and_survive_a_restart(make_client: MakeClient) -> None:
    first = await make_client()
    tokens = [await open_session(first, ["techno"]) for _ in range(4)]
    (a, sa), (b, _) = tokens[0], tokens[1]
    await attempt_match(first, a, sa, b)
    for _ in range(MIN):
        body = await register(first)
        for _ in range(2):  # a user counts once a day however often they come
            assert (await first.get("/me", headers=bearer(body["access_token"]))).status == 200
    await first.app[keys.FLUSHER].flush_once()
    await first.close()  # and the final flush on shutdown
    second = await make_client()
    body = await history(second, **{"from": today(), "to": today()})
    series = body["series"]
    assert series["sessions"] == {"values": [4], "hidden": [False]}
    assert series["signups"] == {"values": [MIN], "hidden": [False]}
    assert series["matches"] == {"values": [None], "hidden": [True]}  # 1 < MIN
    assert series["nudges"]["hidden"] == [True]  # twice matches: hidden with it
    assert series["daily_active_users"] == {"values": [MIN], "hidden": [False]}
    assert body["category_sessions"]["music"] == {"values": [4], "hidden": [False]}
    hourly = await history(second, granularity="hour")
    assert sum(v or 0 for v in hourly["series"]["sessions"]["values"]) in (0, 4)


async def test_small_counts_are_hidden_in_stats_too(make_client: MakeClient) -> None:
    client = await make_client(stats_min_count=2)
    await open_session(client, ["techno"])
    await open_session(client, ["techno"])
    await open_session(client, ["hiking"])
    resp = await client.get("/stats", headers=bearer(ADMIN_TOKEN))
    assert (await resp.json())["top_interest_categories"] == ["music"]


async def test_bad_parameters(client: AppClient) -> None:
    for params in (
        {"granularity": "week"},
        {"from": "yesterday"},
        {"from": "2024-02-01", "to": "2024-01-01"},
        {"from": "2020-01-01", "to": "2024-01-01"},
    ):
        resp = await client.get("/stats/history", params=params, headers=bearer(ADMIN_TOKEN))
        assert resp.status == 400, params


def recover(day_total: int, values: list[int | None]) -> list[int | None]:
    """The attack: a day's total minus its visible hours pins a lone hidden hour
    (or every hidden hour when what is left is 0)."""
    hidden = [i for i, v in enumerate(values) if v is None]
    left = day_total - sum(v for v in values if v is not None)
    if len(hidden) == 1:
        return [left]
    if hidden and left == 0:
        return [0] * len(hidden)
    return []


def test_complementary_suppression_defeats_the_difference_attack() -> None:
    rng = random.Random(7)
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    buckets = [start + dt.timedelta(hours=i) for i in range(48)]
    for _ in range(500):
        values = [rng.choice([0, 0, 1, 2, 5, 9, 10, 11, 30]) for _ in buckets]
        hidden = suppress(buckets, values, "hour", 10)
        for day in range(2):
            cells = [None if hidden[i] else values[i] for i in range(day * 24, day * 24 + 24)]
            day_total = sum(values[day * 24 : day * 24 + 24])
            assert all(v is None or v >= 10 for v in cells)
            assert recover(day_total, cells) == [] or (day_total < 10 and all(v is None for v in cells))


def test_protect_group_hides_a_partner_for_a_lone_hidden_cell() -> None:
    values = [50, 3, 40, 20]
    hidden = [False, True, False, False]
    protect_group(values, hidden, 10)
    assert hidden == [False, True, False, True]


async def test_ranges_publish_no_totals_and_cells_do_not_depend_on_the_range(
    client: AppClient, pg: asyncpg.Connection
) -> None:
    day = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    await pg.executemany(
        "INSERT INTO hourly_stats (hour, metric, count) VALUES ($1, 'sessions', $2)",
        [(day + dt.timedelta(hours=h), n) for h, n in ((0, 30), (1, 2), (2, 40), (3, 25))],
    )
    wide = await history(
        client, granularity="hour", **{"from": day.isoformat(), "to": (day + dt.timedelta(hours=3)).isoformat()}
    )
    narrow = await history(
        client,
        granularity="hour",
        **{"from": (day + dt.timedelta(hours=1)).isoformat(), "to": (day + dt.timedelta(hours=1)).isoformat()},
    )
    assert (
        wide["series"]["sessions"]["values"] == [None, None, 40, 25] or wide["series"]["sessions"]["values"][1] is None
    )
    assert narrow["series"]["sessions"]["values"] == [None]
    assert "total" not in wide["series"]["sessions"]
    hidden_count = sum(wide["series"]["sessions"]["hidden"])
    assert hidden_count >= 2
