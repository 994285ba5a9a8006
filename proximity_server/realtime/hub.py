"""The WebSocket hub: this process's sockets, grouped by channel.

The hub knows only local connections. A channel (a BLE token's, later a
user's) is subscribed on the broker when it gets its first local socket and
unsubscribed when it loses its last. An event arriving from the broker is
decoded once and encoded once per wire format, then queued on each socket.

Every connection has a bounded outgoing queue (see ``wsconn.py``: frames go
straight to the transport, and queue only while the peer reads slowly). A
socket whose queue overflows is closed with ``4008 slow consumer``; it never
holds up delivery to anybody else. The hub also owns the process's detached
sockets (``sockets``: their shared heartbeat); a socket that goes away for
any reason leaves its channel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Final, Protocol

import orjson

from protocol.codec import Codec
from protocol.codes import CloseCode
from protocol.messages import Nudge, nudge_text
from proximity_server.realtime.connection import LiveSockets

log = logging.getLogger(__name__)

EVENT_SEPARATOR: Final = "|"
NUDGE_EVENT: Final = "nudge"


class Connection(Protocol):
    """What the hub needs of a socket (see ``wsconn.WebSocketConnection``)."""

    codec: Codec
    tag: str
    channel: str

    @property
    def closed(self) -> bool: ...

    @property
    def queued(self) -> int: ...

    def send(self, frame: bytes) -> None: ...

    def send_message(self, message: dict[str, Any]) -> None: ...

    def close_soon(self, code: int, *, drop_queued: bool = True) -> None: ...

    async def flush(self) -> None: ...

    async def close(self, code: int = CloseCode.NORMAL) -> None: ...


# Broker payloads whose body is the JSON of the wire message itself: durable
# user events (store/events.py) and the ephemeral typing/presence signals.
JSON_EVENTS: Final = frozenset({"event", "typing", "presence"})
# A control payload: "logout|<ms>" (tokens issued before it are revoked).
LOGOUT_EVENT: Final = "logout"
# A control payload: "ban|<ms>": the user was banned; sockets close with 4403.
BAN_EVENT: Final = "ban"

# Decides, per socket, whether a message goes out (and may act on it, e.g.
# close the socket on a logout). None means every socket gets every message.
Gate = Callable[["Connection", dict[str, Any]], bool]


def decode_event(raw: str) -> dict[str, Any] | None:
    """Turn a broker payload into the wire message it stands for."""
    kind, _, body = raw.partition(EVENT_SEPARATOR)
    if kind == NUDGE_EVENT:
        categories = tuple(body.split(","))
        return Nudge(categories, nudge_text(categories)).to_wire()
    if kind in JSON_EVENTS:
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        return message if isinstance(message, dict) else None
    if kind in (LOGOUT_EVENT, BAN_EVENT) and body.isdigit():
        return {"type": kind, "before_ms": int(body)}
    return None


class Hub:
    def __init__(
        self,
        subscribe: Callable[[str], Coroutine[Any, Any, None]],
        unsubscribe: Callable[[str], Coroutine[Any, Any, None]],
    ) -> None:
        self._subscribe = subscribe
        self._unsubscribe = unsubscribe
        self._channels: dict[str, set[Connection]] = {}
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._holds: dict[str, int] = {}  # channels kept subscribed for sockets about to join
        self._tasks: set[asyncio.Task[None]] = set()
        self.events_delivered = 0
        self.sockets = LiveSockets(on_close=self._forget)
        self.gate: Gate | None = None
        self.close_listeners: list[Callable[[Connection], None]] = []

    @property
    def connection_count(self) -> int:
        return len({conn for conns in self._channels.values() for conn in conns})

    def connections(self, channel: str) -> Iterable[Connection]:
        return tuple(self._channels.get(channel, ()))

    async def hold(self, channel: str) -> None:
        """Subscribe a channel for a socket that will join it, before it exists.

        A WebSocket exists only once its upgrade reply is sent, and a client
        may act on that reply at once (report a match, say). Holding the
        channel first means no event published after the reply is missed.
        Pair every ``hold`` with a ``release``.
        """
        self._holds[channel] = self._holds.get(channel, 0) + 1
        await self._ensure_subscribed(channel, set(), on_failure=lambda: self.release(channel))

    def release(self, channel: str) -> None:
        left = self._holds.get(channel, 0) - 1
        if left > 0:
            self._holds[channel] = left
            return
        self._holds.pop(channel, None)
        self._drop_if_unused(channel)

    async def join(self, channel: str, conn: Connection) -> None:
        """Add a socket to a channel; returns once events on it will arrive."""
        if conn.closed:
            return  # it went away already; nothing would ever remove it
        conn.channel = channel
        await self._ensure_subscribed(channel, {conn}, on_failure=lambda: self.leave(channel, conn))

    async def _ensure_subscribed(self, channel: str, conns: set[Connection], on_failure: Callable[[], None]) -> None:
        """Add ``conns`` to the channel; the first to need it subscribes it, the
        others wait for that subscription. ``on_failure`` undoes the caller's part."""
        existing = self._channels.get(channel)
        if existing is not None:
            existing |= conns
            waiting = self._pending.get(channel)
            if waiting is not None:
                try:
                    await asyncio.shield(waiting)
                except BaseException:
                    on_failure()
                    raise
            return
        self._channels[channel] = conns
        pending = asyncio.get_running_loop().create_future()
        self._pending[channel] = pending
        try:
            await self._subscribe(channel)
        except BaseException as exc:
            on_failure()
            if not pending.done():
                pending.set_exception(exc)
                pending.exception()  # mark retrieved
            raise
        finally:
            if self._pending.get(channel) is pending:
                del self._pending[channel]
            if not pending.done():
                pending.set_result(None)

    def leave(self, channel: str, conn: Connection) -> None:
        conns = self._channels.get(channel)
        if conns is None:
            return
        conns.discard(conn)
        self._drop_if_unused(channel)

    def _drop_if_unused(self, channel: str) -> None:
        conns = self._channels.get(channel)
        if conns is None or conns or self._holds.get(channel):
            return
        del self._channels[channel]
        task: asyncio.Task[None] = asyncio.create_task(self._unsubscribe(channel))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _forget(self, conn: Connection) -> None:
        """A socket went away (closed by either side, dropped, or timed out)."""
        if conn.channel:
            self.leave(conn.channel, conn)
        for listener in self.close_listeners:
            listener(conn)

    def deliver(self, channel: str, raw: str) -> None:
        """Called by the broker for every event on a subscribed channel."""
        conns = self._channels.get(channel)
        if not conns:
            return
        message = decode_event(raw)
        if message is None:
            log.warning("unknown event dropped", extra={"channel": channel})
            return
        encoded: dict[Codec, bytes] = {}
        gate = self.gate
        for conn in tuple(conns):
            if gate is not None and not gate(conn, message):
                continue
            frame = encoded.get(conn.codec)
            if frame is None:
                frame = encoded[conn.codec] = conn.codec.encode(message)
            conn.send(frame)
            self.events_delivered += 1

    async def close_channel(self, channel: str, code: CloseCode, tag: str | None = None) -> None:
        """Close the channel's sockets (only those opened with ``tag``, if given)."""
        conns = [c for c in self.connections(channel) if tag is None or c.tag == tag]
        await asyncio.gather(*(c.close(code) for c in conns), return_exceptions=True)

    async def close_all(self, code: CloseCode) -> None:
        """Close every socket (on shutdown); also stops the heartbeat."""
        conns = {conn for conns in self._channels.values() for conn in conns}
        await asyncio.gather(*(c.close(code) for c in conns), return_exceptions=True)
        await self.sockets.close_all(code)
