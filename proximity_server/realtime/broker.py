"""The broker: how a process hears the events its sockets need.

The hub asks the broker to subscribe to a channel when the channel gets its
first local socket and to unsubscribe when it loses its last. Publishing is
done by the stores (the hot-path script publishes as part of its one round
trip), so a broker only listens. ``Broker`` is what the hub and the rest of
the app rely on; the Redis-speaking implementations live in store/:

* ``store.broker_redis.RedisBroker``: one Redis, one connection, ``SUBSCRIBE``.
* ``store.broker_sharded.ShardedBroker``: a Redis Cluster, sharded pub/sub,
  one connection per primary that owns a needed channel.

``subscribe`` returns once the subscription is confirmed (or raises
``BrokerUnavailable``). Events published while a channel was not subscribed
are lost to pub/sub: once a channel is subscribed again after a gap, the
broker calls its resubscribe listeners, which catch up from a durable log.
"""

from __future__ import annotations

from typing import Protocol

from redis.asyncio import RedisCluster

from store.broker_redis import EventHandler, RedisBroker, ResubscribeListener
from store.broker_sharded import ShardedBroker
from store.errors import BrokerUnavailable
from store.redis_client import RedisClient

__all__ = ["Broker", "BrokerUnavailable", "EventHandler", "ResubscribeListener", "create_broker"]


class Broker(Protocol):
    """Subscriptions to channels, and the listener feeding their events to ``on_event``."""

    @property
    def connected(self) -> bool: ...

    @property
    def reconnects(self) -> int: ...

    async def subscribe(self, channel: str) -> None: ...

    async def unsubscribe(self, channel: str) -> None: ...

    async def run(self) -> None:
        """Listen until cancelled."""

    def add_resubscribe_listener(self, listener: ResubscribeListener) -> None:
        """Call ``listener(channel)`` whenever a channel is subscribed again after a gap."""

    def register_event_handler(self, handler: EventHandler) -> None:
        """Where events go (the hub's ``deliver``); before ``run``."""


def create_broker(client: RedisClient, *, url: str, control_channel: str) -> Broker:
    """The broker for the Redis behind ``client``: sharded on a cluster. Its
    event handler is registered once the hub is built on it."""
    if isinstance(client, RedisCluster):
        return ShardedBroker(client, url)
    return RedisBroker(client, control_channel)
