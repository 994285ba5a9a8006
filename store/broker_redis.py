"""Listening on one Redis: pub/sub connections that survive Redis going away.

``Subscriber`` is one pub/sub connection and the channels it holds (plain
``SUBSCRIBE``, or ``SSUBSCRIBE`` on a cluster node); ``RedisBroker`` is the
broker of a single Redis (one subscriber). Both satisfy what
``proximity_server.realtime.broker.Broker`` describes; the cluster's broker
is in ``store/broker_sharded.py``.

Every subscriber reconnects by itself with backoff when Redis goes away and
re-subscribes every channel it held; ``subscribe`` returns once Redis has
confirmed the subscription, so a socket never misses an event published
right after it was accepted. Events published while a channel was not
subscribed are lost to pub/sub: once Redis confirms a channel again (after a
reconnect, or a move to another shard) the broker tells its *resubscribe
listeners* (``add_resubscribe_listener``), which catch up from a durable log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final

import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import RedisError

from store.errors import BrokerUnavailable
from store.redis_keys import loggable_channel

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT_SECONDS: Final = 5.0
POLL_SECONDS: Final = 1.0
RECONNECT_MIN_SECONDS: Final = 0.05
RECONNECT_MAX_SECONDS: Final = 2.0

EventHandler = Callable[[str, str], None]
# Called with a channel that is subscribed again after a gap in listening.
ResubscribeListener = Callable[[str], None]
# What a broken connection raises: redis-py's errors, the OS's, and uvloop's
# RuntimeError for a write to a transport that has just closed.
CONNECTION_TROUBLE: Final = (RedisError, OSError, RuntimeError)


class Subscriber:
    """One pub/sub connection and the channels it holds.

    ``sharded`` picks ``SSUBSCRIBE`` over ``SUBSCRIBE``. ``anchor`` is a
    channel held for the connection's whole life, so it connects (and
    reports itself connected) before any socket needs a channel.

    Channels are counted: a channel left and joined again at once (the
    hub's unsubscribe runs as a task) stays subscribed, whatever order the
    two calls arrive in.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        on_event: EventHandler,
        *,
        sharded: bool,
        anchor: str | None = None,
        on_trouble: Callable[[Subscriber, BaseException | None], Awaitable[None]] | None = None,
        on_dropped: Callable[[str], None] | None = None,
        on_resubscribed: ResubscribeListener | None = None,
    ) -> None:
        self.client = client
        self._on_event = on_event
        self._sharded = sharded
        self._anchor = anchor
        self._on_trouble = on_trouble  # called before each reconnect, e.g. to move channels
        self._on_dropped = on_dropped  # a channel the server unsubscribed us from
        self._on_resubscribed = on_resubscribed
        # Channels to announce to ``on_resubscribed`` once Redis confirms them.
        self._resync: set[str] = set()
        self.channels: set[str] = set()
        self._pubsub: aioredis.client.PubSub | None = None
        self._connected = asyncio.Event()
        self._wanted = asyncio.Event()  # set while there is something to listen to
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._refs: dict[str, int] = {}
        # On the current connection: subscribed (and not unsubscribed since),
        # of those the ones Redis confirmed, and unsubscribes not answered yet.
        self._sent: set[str] = set()
        self._live: set[str] = set()
        self._leaving: set[str] = set()
        self.reconnects = 0
        self.delivered = 0
        if anchor is not None:
            self._wanted.set()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def idle(self) -> bool:
        """Nothing to listen to: a connection that was never needed counts as healthy."""
        return not self._wanted.is_set()

    async def subscribe(self, channel: str) -> None:
        """Subscribe and wait for Redis to confirm it."""
        self._refs[channel] = self._refs.get(channel, 0) + 1
        self.channels.add(channel)
        self._wanted.set()
        if channel in self._live:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.setdefault(channel, []).append(waiter)
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_SECONDS):
                # Sent now if connected (unless sent already); else the
                # connection being made subscribes it once up.
                await self._send_subscribe(channel)
                await waiter
        except (TimeoutError, *CONNECTION_TROUBLE) as exc:
            self._drop_waiter(channel, waiter)
            raise BrokerUnavailable(f"could not subscribe to {channel}: {exc!r}") from exc

    async def unsubscribe(self, channel: str) -> None:
        left = self._refs.get(channel, 0) - 1
        if left > 0:
            self._refs[channel] = left
            return
        self._refs.pop(channel, None)
        self.channels.discard(channel)
        self._resync.discard(channel)
        for waiter in self._waiters.pop(channel, ()):  # left before it was subscribed: nothing to wait for
            if not waiter.done():
                waiter.set_result(None)
        # Not connected: the connection being made unsubscribes it once up.
        await self._send_unsubscribe(channel)

    async def _send_subscribe(self, channel: str) -> None:
        pubsub = self._pubsub
        if pubsub is None or not self._connected.is_set() or channel in self._sent:
            return
        self._sent.add(channel)  # bookkeeping and the write happen in one step of the loop
        await self._command(pubsub, channel)

    async def _send_unsubscribe(self, channel: str) -> None:
        pubsub = self._pubsub
        if pubsub is None or not self._connected.is_set() or channel not in self._sent:
            return
        self._sent.discard(channel)
        self._live.discard(channel)
        self._leaving.add(channel)
        with contextlib.suppress(*CONNECTION_TROUBLE):
            if self._sharded:
                await pubsub.sunsubscribe(channel)
            else:
                await pubsub.unsubscribe(channel)

    def take(self, channel: str) -> tuple[int, list[asyncio.Future[None]]]:
        """Hand a channel (its count, and whoever waits for it) over to another subscriber."""
        self.channels.discard(channel)
        self._sent.discard(channel)
        self._live.discard(channel)
        self._resync.discard(channel)
        return self._refs.pop(channel, 0), self._waiters.pop(channel, [])

    async def adopt(self, channel: str, refs: int, waiters: list[asyncio.Future[None]]) -> None:
        self._refs[channel] = self._refs.get(channel, 0) + max(refs, 1)
        self.channels.add(channel)
        self._resync.add(channel)  # it moved from another shard: events may have been missed
        if waiters:
            self._waiters.setdefault(channel, []).extend(waiters)
        self._wanted.set()
        if channel in self._live:
            self._confirmed(channel)
            return
        with contextlib.suppress(*CONNECTION_TROUBLE):  # else the next connection subscribes it
            await self._send_subscribe(channel)

    async def _command(self, pubsub: aioredis.client.PubSub, *channels: str) -> None:
        if not self._sharded:
            await pubsub.subscribe(*channels)
            return
        by_slot: dict[int, list[str]] = {}
        for channel in channels:  # one SSUBSCRIBE may only name channels of one slot
            by_slot.setdefault(key_slot(channel.encode()), []).append(channel)
        for same_slot in by_slot.values():
            await pubsub.ssubscribe(*same_slot)

    def _drop_waiter(self, channel: str, waiter: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(channel)
        if waiters and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._waiters[channel]

    def _confirmed(self, channel: str) -> None:
        if channel in self._sent and channel not in self._leaving:  # else an unsubscribe's reply comes next
            self._live.add(channel)
        for waiter in self._waiters.pop(channel, ()):
            if not waiter.done():
                waiter.set_result(None)
        if channel in self._resync:
            self._resync.discard(channel)
            if self._on_resubscribed is not None:
                try:
                    self._on_resubscribed(channel)
                except Exception:
                    log.exception("resubscribe listener failed", extra={"channel": loggable_channel(channel)})

    async def run(self) -> None:
        """Listen until cancelled, reconnecting whenever the connection drops."""
        delay = RECONNECT_MIN_SECONDS
        trouble: BaseException | None = None
        while True:
            await self._wanted.wait()
            if self._on_trouble is not None and trouble is not None:
                try:
                    await self._on_trouble(self, trouble)
                except Exception:  # never let a failed look-up end the listener
                    log.exception("pub/sub: could not re-route channels; retrying on this node")
            channels = ([self._anchor] if self._anchor else []) + sorted(self.channels)
            if not channels:
                self._wanted.clear()
                continue
            pubsub = self.client.pubsub()
            self._sent, self._live, self._leaving = set(channels), set(), set()
            if trouble is not None:
                self._resync |= self.channels
            try:
                await self._command(pubsub, *channels)
                self._pubsub = pubsub
                self._connected.set()
                # Channels joined or left while the connection was being made.
                for gone in self._sent - self.channels - {self._anchor}:
                    await self._send_unsubscribe(gone)
                for missing in self.channels - self._sent:
                    await self._send_subscribe(missing)
                if trouble is not None:
                    log.info("pub/sub listener reconnected", extra={"channels": len(self.channels)})
                delay = RECONNECT_MIN_SECONDS
                trouble = None
                await self._listen(pubsub)
            except CONNECTION_TROUBLE as exc:
                if self._connected.is_set():
                    self.reconnects += 1
                    log.warning("pub/sub connection lost", extra={"error": repr(exc)})
                trouble = exc
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
            if kind in ("message", "smessage"):
                self.delivered += 1
                try:
                    self._on_event(channel, message["data"])
                except Exception:
                    log.exception("event handler failed", extra={"channel": loggable_channel(channel)})
            elif kind in ("subscribe", "ssubscribe"):
                self._confirmed(channel)
            elif kind in ("unsubscribe", "sunsubscribe"):
                if channel in self._leaving:
                    self._leaving.discard(channel)  # our own
                elif channel in self.channels and self._on_dropped is not None:
                    # The node gave the channel's slot away (resharding or failover).
                    self._on_dropped(channel)


def unregistered(channel: str, raw: str) -> None:
    """The event handler until one is registered: an event must not be lost silently."""
    raise RuntimeError("no event handler registered with the broker")


class BrokerCallbacks:
    """What both brokers hand their subscribers: the registered event handler
    and the listeners told about re-subscriptions."""

    def __init__(self, on_event: EventHandler | None) -> None:
        self._on_event: EventHandler = on_event or unregistered
        self._listeners: list[ResubscribeListener] = []

    def register_event_handler(self, handler: EventHandler) -> None:
        """Where events go (the hub's ``deliver``), when the hub is built after the broker; before ``run``."""
        self._on_event = handler

    def _event(self, channel: str, raw: str) -> None:
        self._on_event(channel, raw)

    def add_resubscribe_listener(self, listener: ResubscribeListener) -> None:
        """Call ``listener(channel)`` whenever a channel is subscribed again after a gap."""
        self._listeners.append(listener)

    def _resubscribed(self, channel: str) -> None:
        for listener in self._listeners:
            listener(channel)


class RedisBroker(BrokerCallbacks):
    """A single Redis: one connection, ``SUBSCRIBE``."""

    def __init__(self, client: aioredis.Redis, control_channel: str, on_event: EventHandler | None = None) -> None:
        super().__init__(on_event)
        self._subscriber = Subscriber(
            client, self._event, sharded=False, anchor=control_channel, on_resubscribed=self._resubscribed
        )

    @property
    def connected(self) -> bool:
        return self._subscriber.connected

    @property
    def reconnects(self) -> int:
        return self._subscriber.reconnects

    @property
    def delivered(self) -> int:
        return self._subscriber.delivered

    async def subscribe(self, channel: str) -> None:
        await self._subscriber.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        await self._subscriber.unsubscribe(channel)

    async def run(self) -> None:
        await self._subscriber.run()
