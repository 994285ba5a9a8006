"""GET /metrics: admin auth, Prometheus text, bounded route labels, live gauges."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from proximity_server.app import state as keys
from proximity_server.runtime.metrics import NudgeCounter
from store.proximity import MatchDecision
from tests.conftest import ADMIN_TOKEN, AppClient, MakeClient
from tests.helpers import attempt_match, bearer, open_session


async def scrape(client: AppClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = await client.get("/metrics", headers=bearer(ADMIN_TOKEN))
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_metrics_need_the_admin_token(client: AppClient) -> None:
    resp = await client.get("/metrics")
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthorized"
    resp = await client.get("/metrics", headers=bearer("not-the-admin-token"))
    assert resp.status == 403


async def test_requests_latency_and_events(client: AppClient) -> None:
    a, sa = await open_session(client, ["devops"])
    b, sb = await open_session(client, ["coding"])
    ws = await client.ws_connect(f"/ws/{a}", headers=bearer(sa))
    body = await attempt_match(client, b, sb, a)
    assert body["nudge_sent"] is True
    assert (await ws.receive_json(timeout=3))["type"] == "nudge"
    await client.get("/profiles/not-a-user")  # 401, dynamic route
    await client.get("/no/such/path")  # 404, no route

    samples = await scrape(client)
    requests = "proximity_http_requests_total"
    assert samples[(requests, (("method", "POST"), ("route", "/session"), ("status", "201")))] == 2
    assert samples[(requests, (("method", "POST"), ("route", "/match"), ("status", "200")))] == 1
    assert samples[(requests, (("method", "GET"), ("route", "/ws/{ble_token}"), ("status", "101")))] == 1
    assert samples[(requests, (("method", "GET"), ("route", "/profiles/{user_id}"), ("status", "401")))] == 1
    assert samples[(requests, (("method", "GET"), ("route", "unmatched"), ("status", "404")))] == 1
    assert not any(a in str(labels) or "not-a-user" in str(labels) for (_, labels) in samples)  # raw paths never
    latency = "proximity_http_request_duration_seconds"
    assert samples[(latency + "_count", (("method", "POST"), ("route", "/session")))] == 2
    assert samples[(latency + "_bucket", (("le", "+Inf"), ("method", "POST"), ("route", "/session")))] == 2
    assert samples[(latency + "_sum", (("method", "POST"), ("route", "/match")))] > 0

    assert samples[("proximity_websockets_open", ())] == 1
    assert samples[("proximity_websockets_subscribed", ())] == 1
    assert samples[("proximity_nudges_published_total", ())] == 1
    assert samples[("proximity_events_delivered_total", ())] == 1
    assert samples[("proximity_pubsub_reconnects_total", ())] == 0
    assert samples[("proximity_pubsub_connected", ())] == 1
    assert samples[("proximity_counter_flush_lag_seconds", ())] >= 0
    assert samples[("proximity_pg_pool_connections", (("state", "idle"),))] >= 0
    assert samples[("proximity_pg_pool_max_connections", ())] >= 1
    assert ("proximity_redis_pool_connections", (("state", "idle"),)) in samples
    await ws.close()


async def test_flush_lag_and_registries_per_app(make_client: MakeClient) -> None:
    one = await make_client()
    two = await make_client()
    await one.app[keys.FLUSHER].flush_once()
    await asyncio.sleep(0.05)
    await open_session(one, ["devops"])
    lag = (await scrape(one))[("proximity_counter_flush_lag_seconds", ())]
    assert 0 < lag < 5
    samples = await scrape(two)
    # the other app saw no /session request: each app counts only its own
    assert not any(
        name == "proximity_http_requests_total" and ("route", "/session") in labels for name, labels in samples
    )


async def test_the_nudge_counter_listens_to_the_proximity_service(client: AppClient) -> None:
    a, _ = await open_session(client, ["devops"])
    b, sb = await open_session(client, ["coding"])
    assert (await attempt_match(client, b, sb, a))["nudge_sent"] is True
    assert (await attempt_match(client, b, sb, a))["nudge_sent"] is False  # the pair was nudged already
    assert client.app[keys.METRICS].nudges.published == 1

    counter = NudgeCounter()
    counter.observe(MatchDecision(authorised=True, match=True, shared_categories=("tech",), nudged=True))
    counter.observe(MatchDecision(authorised=True, match=False))
    assert counter.published == 1
