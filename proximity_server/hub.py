"""The WebSocket hub: this process's sockets, grouped by channel.

The hub knows only local connections. A channel (a BLE token's, later a
user's) is subscribed on the broker when it gets its first local socket and
unsubscribed when it loses its last. An event arriving from the broker is
decoded once and encoded once per wire format, then queued on each socket.

Every connection has a bounded outgoing queue drained by its own short-lived
writer task (none while idle). A socket whose queue overflows is closed with
``4008 slow consumer``; it never holds up delivery to anybody else.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Final

from aiohttp import WSMsgType, web

from protocol.codec import Codec
from protocol.codes import CLOSE_REASONS, CloseCode
from protocol.messages import Nudge, nudge_text

log = logging.getLogger(__name__)

SEND_QUEUE_LIMIT: Final = 256  # frames waiting for one socket before it counts as slow
CLOSE_TIMEOUT_SECONDS: Final = 2.0

EVENT_SEPARATOR: Final = "|"
NUDGE_EVENT: Final = "nudge"


class Connection:
    """One accepted WebSocket and its outgoing queue."""

    __slots__ = ("_closer", "_closing", "_queue", "_transport", "_writer", "_ws", "codec", "tag")

    def __init__(
        self,
        ws: web.WebSocketResponse,
        codec: Codec,
        transport: asyncio.BaseTransport | None,
        tag: str = "",
    ) -> None:
        self._ws = ws
        self._transport = transport
        self.codec = codec
        # What authenticated the socket (e.g. the session secret's hash), so
        # the owner can close exactly the sockets a revoked credential opened.
        self.tag = tag
        self._queue: deque[bytes] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def closed(self) -> bool:
        return self._closing or self._ws.closed

    @property
    def queued(self) -> int:
        return len(self._queue)

    def send(self, frame: bytes) -> None:
        """Queue an encoded frame; never blocks."""
        if self.closed:
            return
        if len(self._queue) >= SEND_QUEUE_LIMIT:
            self.close_soon(CloseCode.SLOW_CONSUMER)
            return
        self._queue.append(frame)
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain())

    def send_message(self, message: dict[str, Any]) -> None:
        self.send(self.codec.encode(message))

    async def _drain(self) -> None:
        opcode = WSMsgType.BINARY if self.codec.binary else WSMsgType.TEXT
        try:
            while self._queue and not self.closed:
                await self._ws.send_frame(self._queue.popleft(), opcode)
        except (ConnectionError, RuntimeError):
            self._queue.clear()  # the peer is gone; the reader side cleans up
        finally:
            self._writer = None

    async def flush(self) -> None:
        """Wait until queued frames are written (e.g. an error before a close)."""
        writer = self._writer
        if writer is not None:
            await asyncio.wait([writer], timeout=CLOSE_TIMEOUT_SECONDS)

    def close_soon(self, code: CloseCode) -> None:
        """Close in the background with a named code (idempotent)."""
        if self._closing:
            return
        self._closing = True
        self._queue.clear()
        self._closer = asyncio.create_task(self.close(code))

    async def close(self, code: CloseCode) -> None:
        self._closing = True
        self._queue.clear()
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                await self._ws.close(code=int(code), message=CLOSE_REASONS[code].encode())
        except (TimeoutError, ConnectionError, RuntimeError):
            # The peer does not read: drop the connection instead of waiting.
            if self._transport is not None:
                self._transport.abort()  # type: ignore[attr-defined]


def decode_event(raw: str) -> dict[str, Any] | None:
    """Turn a broker payload into the wire message it stands for."""
    kind, _, body = raw.partition(EVENT_SEPARATOR)
    if kind == NUDGE_EVENT:
        categories = tuple(body.split(","))
        return Nudge(categories, nudge_text(categories)).to_wire()
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
        self._tasks: set[asyncio.Task[None]] = set()
        self.events_delivered = 0

    @property
    def connection_count(self) -> int:
        return len({conn for conns in self._channels.values() for conn in conns})

    def connections(self, channel: str) -> Iterable[Connection]:
        return tuple(self._channels.get(channel, ()))

    async def join(self, channel: str, conn: Connection) -> None:
        """Add a socket to a channel; returns once events on it will arrive."""
        conns = self._channels.get(channel)
        if conns is None:
            conns = self._channels[channel] = set()
            conns.add(conn)
            pending = asyncio.get_running_loop().create_future()
            self._pending[channel] = pending
            try:
                await self._subscribe(channel)
            except BaseException as exc:
                self.leave(channel, conn)
                if not pending.done():
                    pending.set_exception(exc)
                    pending.exception()  # mark retrieved
                raise
            finally:
                if self._pending.get(channel) is pending:
                    del self._pending[channel]
                if not pending.done():
                    pending.set_result(None)
            return
        conns.add(conn)
        waiting = self._pending.get(channel)
        if waiting is not None:
            try:
                await asyncio.shield(waiting)
            except BaseException:
                self.leave(channel, conn)
                raise

    def leave(self, channel: str, conn: Connection) -> None:
        conns = self._channels.get(channel)
        if conns is None:
            return
        conns.discard(conn)
        if not conns:
            del self._channels[channel]
            task: asyncio.Task[None] = asyncio.create_task(self._unsubscribe(channel))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

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
        for conn in tuple(conns):
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
        conns = {conn for conns in self._channels.values() for conn in conns}
        await asyncio.gather(*(c.close(code) for c in conns), return_exceptions=True)
