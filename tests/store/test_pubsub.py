"""Publishing on the multiplexed connection: one Redis and a Redis Cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import RedisCluster

from store.broker_redis import RedisBroker
from store.broker_sharded import ShardedBroker
from store.mux import MuxCluster, MuxRedis
from store.pubsub import Publisher
from store.redis_client import RedisClient, create_client
from store.redis_keys import Keys
from tests.conftest import namespaced_settings

Got = list[tuple[str, str]]


@pytest.fixture(params=["single", "cluster"])
async def setup(request: pytest.FixtureRequest, service_urls: tuple[str, str]) -> AsyncIterator[Any]:
    cluster = request.param == "cluster"
    redis_url = request.getfixturevalue("redis_cluster_url") if cluster else service_urls[1]
    async for settings in namespaced_settings(service_urls[0], redis_url, cluster=cluster):
        assert settings.redis_url
        client: RedisClient = create_client(settings.redis_url, cluster=cluster)
        if isinstance(client, RedisCluster):
            await client.initialize()
        got: Got = []
        on_event = _recorder(got)

        broker: RedisBroker | ShardedBroker
        if cluster:
            broker = ShardedBroker(client, settings.redis_url, on_event)  # type: ignore[arg-type]
        else:
            broker = RedisBroker(client, f"{settings.redis_prefix}ev:control", on_event)  # type: ignore[arg-type]
        mux = MuxCluster(settings.redis_url) if cluster else MuxRedis(settings.redis_url)
        task = asyncio.create_task(broker.run())
        try:
            yield broker, Publisher(client, sharded=cluster, mux=mux), Keys(settings.redis_prefix), got
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await mux.aclose()
            await client.aclose()


def _recorder(got: Got) -> Callable[[str, str], None]:
    def on_event(channel: str, raw: str) -> None:
        got.append((channel, raw))

    return on_event


async def _arrived(got: Got, expected: list[tuple[str, str]]) -> bool:
    for _ in range(80):
        if all(item in got for item in expected):
            return True
        await asyncio.sleep(0.025)
    return False


async def test_one_and_many_messages_reach_their_channels_in_order(setup: Any) -> None:
    broker, publisher, keys, got = setup
    channels = [keys.user_channel(f"user-{n}") for n in range(5)]  # several slots on a cluster
    for channel in channels:
        await broker.subscribe(channel)
    await publisher.publish(channels[0], "solo")
    batch = [(channel, f"event|{n}") for n, channel in enumerate(channels)]
    batch.append((channels[1], "event|second-on-1"))
    await publisher.publish_many(batch)
    await publisher.publish_many([(channels[2], b"bytes|ok")])
    expected = [(channels[0], "solo"), *batch, (channels[2], "bytes|ok")]
    assert await _arrived(got, expected), got
    on_1 = [raw for channel, raw in got if channel == channels[1]]
    assert on_1 == ["event|1", "event|second-on-1"]  # one channel's messages keep their order
    assert len(got) == len(expected)  # nothing published twice
