"""A broker built before its hub delivers to the handler registered afterwards (as the app wires them)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from config.settings import Settings
from store.broker_redis import RedisBroker
from store.broker_sharded import ShardedBroker
from store.pubsub import Publisher
from store.redis_client import create_client
from store.redis_keys import Keys
from tests.conftest import namespaced_settings

WAIT_SECONDS = 3.0


@pytest.mark.parametrize("kind", ["single", "cluster"])
async def test_events_reach_the_handler_registered_after_construction(
    kind: str, request: pytest.FixtureRequest, service_urls: tuple[str, str]
) -> None:
    cluster = kind == "cluster"
    redis_url = request.getfixturevalue("redis_cluster_url") if cluster else service_urls[1]
    async for settings in namespaced_settings(service_urls[0], redis_url, cluster=cluster):
        await _check_delivery(settings)


async def _check_delivery(settings: Settings) -> None:
    assert settings.redis_url
    cluster = settings.redis_cluster
    client: Any = create_client(settings.redis_url, cluster=cluster)
    if cluster:
        await client.initialize()
    broker: RedisBroker | ShardedBroker = (
        ShardedBroker(client, settings.redis_url)
        if cluster
        else RedisBroker(client, f"{settings.redis_prefix}ev:control")
    )
    got: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    broker.register_event_handler(lambda channel, raw: got.put_nowait((channel, raw)))
    task = asyncio.create_task(broker.run())
    try:
        channel = Keys(settings.redis_prefix).token_channel("tok_wired_1")
        await broker.subscribe(channel)
        await Publisher(client, sharded=cluster).publish(channel, "hello")
        assert await asyncio.wait_for(got.get(), WAIT_SECONDS) == (channel, "hello")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()
