"""Listening on a Redis Cluster: sharded pub/sub (``SSUBSCRIBE``, Redis 7).

An event travels only to the shard that owns its channel's slot instead of
to every node. ``ShardedBroker`` holds one ``Subscriber``
(``store/broker_redis.py``) per primary that owns a channel it needs, and
moves channels when the cluster's slots move (a failed connection, a
``MOVED`` reply, or the ``sunsubscribe`` a node sends when it gives a slot
away). It satisfies ``proximity_server.realtime.broker.Broker``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Final

import redis.asyncio as aioredis
from redis.connection import parse_url

from store.broker_redis import BrokerCallbacks, EventHandler, Subscriber
from store.errors import BrokerUnavailable

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS: Final = 2.0
SLOT_REFRESH_MIN_SECONDS: Final = 1.0


class ShardedBroker(BrokerCallbacks):
    """A Redis Cluster: one ``SSUBSCRIBE`` connection per primary that owns a needed channel."""

    def __init__(self, cluster: aioredis.RedisCluster, url: str, on_event: EventHandler | None = None) -> None:
        super().__init__(on_event)
        self._cluster = cluster
        self._params: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        self._subscribers: dict[str, Subscriber] = {}  # node name -> its subscriber
        self._tasks: set[asyncio.Task[None]] = set()
        self._running = False
        self._moves: set[asyncio.Task[None]] = set()
        self._refresh_lock = asyncio.Lock()
        self._refreshed_at = -SLOT_REFRESH_MIN_SECONDS

    @property
    def connected(self) -> bool:
        return self._running and all(s.connected or s.idle for s in self._subscribers.values())

    @property
    def reconnects(self) -> int:
        return sum(s.reconnects for s in self._subscribers.values())

    @property
    def delivered(self) -> int:
        return sum(s.delivered for s in self._subscribers.values())

    async def subscribe(self, channel: str) -> None:
        # A MOVED reply (a stale slot map) breaks that connection; before it
        # reconnects, ``_rehome`` moves the channel, and its waiter with it.
        await (await self._subscriber_for(channel)).subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        for subscriber in list(self._subscribers.values()):
            if channel in subscriber.channels:
                await subscriber.unsubscribe(channel)

    async def run(self) -> None:
        self._running = True
        try:
            await asyncio.Event().wait()  # the subscribers' tasks do the work
        finally:
            self._running = False
            for task in [*self._tasks, *self._moves]:
                task.cancel()
            for task in [*self._tasks, *self._moves]:
                with contextlib.suppress(BaseException):
                    await task
            for subscriber in self._subscribers.values():
                with contextlib.suppress(Exception):
                    await subscriber.client.aclose()

    async def _subscriber_for(self, channel: str) -> Subscriber:
        node = self._cluster.get_node_from_key(channel)
        if node is None:  # the client has not read the cluster's slots yet
            with contextlib.suppress(Exception):  # a cluster that cannot be reached: see below
                await self._cluster.initialize()  # once per client (it holds a lock and returns if done)
            node = self._cluster.get_node_from_key(channel)
            if node is None:
                raise BrokerUnavailable(f"no cluster node serves {channel}")
        subscriber = self._subscribers.get(node.name)
        if subscriber is None:
            p = self._params
            client = aioredis.Redis(
                host=node.host,
                port=int(node.port),
                username=p.get("username"),
                password=p.get("password"),
                decode_responses=True,
                socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            )
            subscriber = Subscriber(
                client,
                self._event,
                sharded=True,
                on_trouble=self._rehome,
                on_dropped=self._dropped,
                on_resubscribed=self._resubscribed,
            )
            self._subscribers[node.name] = subscriber
            task = asyncio.create_task(subscriber.run(), name=f"pubsub-{node.name}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return subscriber

    async def _refresh_slots(self) -> None:
        """Re-read the slot map after trouble; one refresh at a time, at most one per second."""
        async with self._refresh_lock:
            if time.monotonic() - self._refreshed_at < SLOT_REFRESH_MIN_SECONDS:
                return
            try:
                await self._cluster.nodes_manager.initialize()
            except Exception as exc:  # RedisClusterException is not a RedisError
                log.warning("could not re-read the cluster's slots", extra={"error": repr(exc)})
            self._refreshed_at = time.monotonic()

    async def _rehome(self, subscriber: Subscriber, trouble: BaseException | None) -> None:
        """Before a subscriber reconnects: re-read the slots and move the channels it no longer owns."""
        await self._refresh_slots()
        for channel in sorted(subscriber.channels):
            try:
                owner = await self._subscriber_for(channel)
            except BrokerUnavailable:
                continue  # stays here; the next reconnect looks again
            if owner is not subscriber:
                await owner.adopt(channel, *subscriber.take(channel))

    def _dropped(self, channel: str) -> None:
        task = asyncio.create_task(self._move(channel), name="pubsub-move")
        self._moves.add(task)
        task.add_done_callback(self._moves.discard)

    async def _move(self, channel: str) -> None:
        await self._refresh_slots()
        refs, waiters = 0, []
        for subscriber in list(self._subscribers.values()):
            if channel in subscriber.channels:
                taken, taken_waiters = subscriber.take(channel)
                refs += taken
                waiters += taken_waiters
        try:
            owner = await self._subscriber_for(channel)
        except BrokerUnavailable as exc:
            log.warning("could not move a channel to its new shard", extra={"error": repr(exc)})
            return
        await owner.adopt(channel, refs, waiters)
