"""GET /livez and GET /health, with dependencies up and down."""

from __future__ import annotations

import socket

from tests.conftest import AppClient, MakeClient


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_livez_and_health_ok(client: AppClient) -> None:
    resp = await client.get("/livez")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}
    resp = await client.get("/health")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ok"
    assert body["checks"]["redis"] == "ok"
    assert body["checks"]["postgres"] == "ok"


async def test_health_names_redis_when_it_is_down(make_client: MakeClient) -> None:
    client = await make_client(redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    resp = await client.get("/health")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["redis"] == "down"
    assert body["checks"]["postgres"] == "ok"
    # the hot path fails fast with a JSON 503, not a hang or a 500
    resp = await client.post("/session", json={"ble_token": "abcdefgh", "interests": ["devops"]})
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "unavailable"
