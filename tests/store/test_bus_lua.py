"""What the hot path's Lua scripts publish is read with protocol/bus.py.

The scripts cannot import the envelope; the store passes them its prefix.
This checks the bytes a real match publishes, on one Redis and on a cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from config.settings import Settings
from protocol import bus
from store.redis_keys import Keys
from tests.conftest import MakeClient, namespaced_settings
from tests.helpers import bearer, open_session


@pytest.fixture(params=["single", "cluster"])
async def settings(request: pytest.FixtureRequest, service_urls: tuple[str, str]) -> AsyncIterator[Settings]:
    cluster = request.param == "cluster"
    redis_url = request.getfixturevalue("redis_cluster_url") if cluster else service_urls[1]
    async for value in namespaced_settings(service_urls[0], redis_url, cluster=cluster):
        yield value


async def test_a_match_publishes_nudges_that_decode_with_the_bus(make_client: MakeClient, settings: Settings) -> None:
    client = await make_client()
    own, own_secret = await open_session(client, ["devops", "hardstyle"])
    other, _ = await open_session(client, ["hardstyle", "devops"])
    redis_keys = Keys(settings.redis_prefix)
    channels = [redis_keys.token_channel(own), redis_keys.token_channel(other)]
    assert settings.redis_url
    if settings.redis_cluster:
        # each token channel lives on its own slot's node: listen on each one's node
        cluster = aioredis.RedisCluster.from_url(settings.redis_url, decode_responses=True)
        await cluster.initialize()
        listeners = []
        pubsubs = []
        for channel in channels:
            node = cluster.get_node_from_key(channel)
            assert node is not None
            listener = aioredis.Redis(host=node.host, port=int(node.port), decode_responses=True)
            listeners.append(listener)
            pubsub = listener.pubsub()
            await pubsub.ssubscribe(channel)
            pubsubs.append(pubsub)
        await cluster.aclose()  # type: ignore[no-untyped-call]
    else:
        listener = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
        listeners = [listener]
        pubsub = listener.pubsub()
        await pubsub.subscribe(*channels)
        pubsubs = [pubsub]
    try:
        for pubsub in pubsubs:
            for _ in range(len(channels) if len(pubsubs) == 1 else 1):
                confirm = await pubsub.get_message(timeout=2.0)
                assert confirm is not None and confirm["type"] in ("subscribe", "ssubscribe")
        resp = await client.post("/match", json={"own_token": own, "detected_token": other}, headers=bearer(own_secret))
        reply = await resp.json()
        assert reply["nudge_sent"] is True
        shared = ",".join(reply["shared_interests"]).encode()
        got: dict[str, tuple[str, bytes]] = {}
        for _ in range(40):
            for pubsub in pubsubs:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
                if message is not None:
                    got[message["channel"]] = bus.decode(message["data"])
            if len(got) == len(channels):
                break
            await asyncio.sleep(0.01)
        assert got == {channel: (bus.NUDGE, shared) for channel in channels}
        assert shared
    finally:
        for pubsub in pubsubs:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
        for listener in listeners:
            await listener.aclose()
