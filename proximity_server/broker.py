"""The Redis pub/sub broker: one subscriber connection per process.

The hub asks the broker to subscribe to a channel when the channel gets its
first local socket and to unsubscribe when it loses its last. Publishing is
done by the store (the hot-path script publishes as part of its one round
trip), so the broker only listens.

The listener reconnects by itself with backoff when Redis goes away and
re-subscribes every channel it held; ``subscribe`` returns once Redis has
confirmed the subscription, so a socket never misses an event published right
after it was accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT_SECONDS: Final = 5.0
POLL_SECONDS: Final = 1.0
RECONNECT_MIN_SECONDS: Final = 0.05
RECONNECT_MAX_SECONDS: Final = 2.0

EventHandler = Callable[[str, str], None]


class BrokerUnavailable(RuntimeError):
    """The broker could not subscribe in time (Redis is down)."""


class RedisBroker:
    def __init__(self, client: aioredis.Redis, control_channel: str, on_event: EventHandler) -> None:
        self._client = client
        self._control = control_channel
        self._on_event = on_event
        self._channels: set[str] = set()
        self._pubsub: aioredis.client.PubSub | None = None
        self._connected = asyncio.Event()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self.reconnects = 0
        self.delivered = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def subscribe(self, channel: str) -> None:
        """Subscribe and wait for Redis to confirm it."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.setdefault(channel, []).append(waiter)
        self._channels.add(channel)
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_SECONDS):
                await self._connected.wait()
                pubsub = self._pubsub
                assert pubsub is not None
                await pubsub.subscribe(channel)
                await waiter
        except (TimeoutError, RedisError, OSError) as exc:
            self._drop_waiter(channel, waiter)
            raise BrokerUnavailable(f"could not subscribe to {channel}: {exc!r}") from exc

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        pubsub = self._pubsub
        if pubsub is None or not self._connected.is_set():
            return  # the next connection will not re-subscribe it
        with contextlib.suppress(RedisError, OSError):
            await pubsub.unsubscribe(channel)

    def _drop_waiter(self, channel: str, waiter: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(channel)
        if waiters and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._waiters[channel]

    def _confirmed(self, channel: str) -> None:
        for waiter in self._waiters.pop(channel, ()):
            if not waiter.done():
                waiter.set_result(None)

    async def run(self) -> None:
        """Listen until cancelled, reconnecting whenever the connection drops."""
        delay = RECONNECT_MIN_SECONDS
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self._control, *self._channels)
                self._pubsub = pubsub
                self._connected.set()
                if delay > RECONNECT_MIN_SECONDS:
                    log.info("pub/sub listener reconnected", extra={"channels": len(self._channels)})
                delay = RECONNECT_MIN_SECONDS
                await self._listen(pubsub)
            except (RedisError, OSError) as exc:
                if self._connected.is_set():
                    self.reconnects += 1
                    log.warning("pub/sub connection lost", extra={"error": repr(exc)})
                self._connected.clear()
                self._pubsub = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
            finally:
                self._connected.clear()
                self._pubsub = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _listen(self, pubsub: aioredis.client.PubSub) -> None:
        while True:
            message = await pubsub.get_message(timeout=POLL_SECONDS)
            if message is None:
                continue
            kind = message["type"]
            channel = message["channel"]
            if kind == "message":
                self.delivered += 1
                try:
                    self._on_event(channel, message["data"])
                except Exception:
                    log.exception("event handler failed", extra={"channel": channel})
            elif kind == "subscribe":
                self._confirmed(channel)
