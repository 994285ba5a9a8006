"""The pub/sub brokers under joins and leaves that race each other.

The hub unsubscribes a channel in a task when its last socket leaves, so a
leave and the next join of the same channel reach the broker in either order,
and a leave can come while the join's subscription is still on its way.
Whatever the order, a channel that is wanted must end up subscribed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import RedisCluster

from config.settings import Settings
from proximity_server.realtime.broker import Broker, create_broker
from store.pubsub import Publisher
from store.redis_client import RedisClient, create_client
from store.redis_keys import Keys
from tests.conftest import namespaced_settings


@pytest.fixture(params=["single", "cluster"])
async def broker_setup(
    request: pytest.FixtureRequest, service_urls: tuple[str, str]
) -> AsyncIterator[tuple[Broker, Publisher, Keys, list[tuple[str, str]]]]:
    cluster = request.param == "cluster"
    redis_url = request.getfixturevalue("redis_cluster_url") if cluster else service_urls[1]
    async for settings in namespaced_settings(service_urls[0], redis_url, cluster=cluster):
        async for value in _broker(settings):
            yield value


async def _broker(settings: Settings) -> AsyncIterator[tuple[Broker, Publisher, Keys, list[tuple[str, str]]]]:
    assert settings.redis_url
    client: RedisClient = create_client(settings.redis_url, cluster=settings.redis_cluster)
    if isinstance(client, RedisCluster):
        await client.initialize()  # as the server does at start
    got: list[tuple[str, str]] = []

    def on_event(channel: str, raw: str) -> None:
        got.append((channel, raw))

    broker = create_broker(client, url=settings.redis_url, control_channel=f"{settings.redis_prefix}ev:control")
    broker.register_event_handler(on_event)
    task = asyncio.create_task(broker.run())
    try:
        yield broker, Publisher(client, sharded=settings.redis_cluster), Keys(settings.redis_prefix), got
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()


async def delivered(publisher: Publisher, channel: str, got: list[tuple[str, str]], payload: str) -> bool:
    await publisher.publish(channel, payload)
    for _ in range(40):
        if (channel, payload) in got:
            return True
        await asyncio.sleep(0.025)
    return False




async def test_a_leave_during_the_join_then_a_join_again(broker_setup: Any) -> None:
    broker, publisher, keys, got = broker_setup
    channel = keys.token_channel("tok_race_1")
    first = asyncio.create_task(broker.subscribe(channel))
    await asyncio.sleep(0)  # the subscription is on its way
    await broker.unsubscribe(channel)
    await asyncio.wait_for(first, 6)
    await asyncio.wait_for(broker.subscribe(channel), 2)  # must not wait for a reply that never comes
    assert await delivered(publisher, channel, got, "after-rejoin")


async def test_a_join_before_the_previous_leave_arrives(broker_setup: Any) -> None:
    broker, publisher, keys, got = broker_setup
    channel = keys.token_channel("tok_race_2")
    await asyncio.wait_for(broker.subscribe(channel), 6)
    await asyncio.wait_for(broker.subscribe(channel), 2)  # the next socket joins first...
    await broker.unsubscribe(channel)  # ...then the previous one's leave runs
    assert await delivered(publisher, channel, got, "still-wanted")


async def test_a_leave_then_a_join_at_once(broker_setup: Any) -> None:
    broker, publisher, keys, got = broker_setup
    channel = keys.token_channel("tok_race_3")
    await asyncio.wait_for(broker.subscribe(channel), 6)
    leave = asyncio.create_task(broker.unsubscribe(channel))
    await asyncio.wait_for(broker.subscribe(channel), 2)
    await leave
    assert await delivered(publisher, channel, got, "rejoined")
    await broker.unsubscribe(channel)
    got.clear()
    assert not await delivered(publisher, channel, got, "nobody-listens")
