"""A chat send's Redis work (rate limit, publish) goes over the multiplexed
connection: the pooled redis-py client is not touched while a message is
sent, counted and published."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from config.settings import Settings
from protocol import bus
from proximity_server.app import state as keys
from store.redis_keys import Keys
from tests.auth_helpers import ACCOUNT_OVERRIDES
from tests.chat_helpers import matched_pair
from tests.conftest import AppClient


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(**ACCOUNT_OVERRIDES, rate_limit_messages_per_minute=1000)


async def test_a_send_uses_only_the_multiplexed_connection(
    client: AppClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    if settings.redis_cluster:
        pytest.skip("on a cluster the access check is a redis-py pipeline (its keys live in two slots)")
    a, b, match = await matched_pair(client)
    conversation_id = match["conversation_id"]
    redis = client.app[keys.REDIS]
    channel = Keys(settings.redis_prefix).user_channel(b.user_id)
    pubsub = redis.pubsub()
    await pubsub.subscribe(channel)
    assert (await pubsub.get_message(timeout=2.0))["type"] == "subscribe"  # type: ignore[index]
    used: list[str] = []

    def refuse(name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            used.append(name)
            raise AssertionError(f"the send used the pooled client's {name}")

        return call

    try:
        for name in ("pipeline", "execute_command", "incr", "pexpire", "publish"):
            monkeypatch.setattr(redis, name, refuse(name))
        resp = await client.post(
            f"/conversations/{conversation_id}/messages",
            json={"client_id": uuid.uuid4().hex, "text": "over one connection"},
            headers=a.auth,
        )
        assert resp.status == 201, await resp.text()
        sent = await resp.json()
        monkeypatch.undo()
        assert used == []
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
        assert message is not None
        kind, body = bus.decode(message["data"])
        assert kind == bus.EVENT
        event = orjson.loads(body)
        assert event["type"] == "message" and event["message"] == sent
        counters = [key async for key in redis.scan_iter(match=f"{settings.redis_prefix}*messages*")]
        assert len(counters) == 1 and await redis.get(counters[0]) == "1"  # counted once, by the script
    finally:
        monkeypatch.undo()
        await pubsub.aclose()  # type: ignore[no-untyped-call]
