"""Slim WebSocket connections: what an idle socket keeps after the upgrade.

Why this exists. A phone holds its WebSocket open all day and almost never
sends anything, yet a stock ``aiohttp.web.WebSocketResponse`` keeps, for as
long as the socket lives: the parsed upgrade request and its headers, the
HTTP ``RequestHandler`` with its parser and buffers, the handler task and the
coroutine frames of the ``async for msg in ws`` loop, the response's reader
queue, and a heartbeat timer (~19 KB of RSS per socket at 10,000 sockets).
After the handshake nothing of that is needed. Here each socket is handed to a
:class:`WebSocketConnection`, a slotted ``asyncio.Protocol`` with aiohttp's own
frame reader and writer; frames are dispatched synchronously from
``data_received``; one heartbeat task per process pings every socket; a
writer task exists only while a socket's outgoing queue is backed up.

How a socket is handed over (see ``handlers/proximity.py``)::

    ws = DetachedWebSocketResponse(protocols=..., max_msg_size=...)
    await ws.prepare(request)          # aiohttp does the handshake, writes 101
    conn = sockets.attach(request, ws, codec, tag, on_frame)   # no await before this
    await hub.join(channel, conn)      # frames may already arrive: conn handles them
    return ws                          # write_eof() releases aiohttp's RequestHandler

What it relies on in aiohttp 3.14 (pinned in requirements.txt; the tests in
``tests/realtime/test_wsconn.py`` and ``tests/realtime/test_ws.py`` exercise each point):

* ``aiohttp._websocket.reader.WebSocketReader(queue, max_msg_size, compress,
  decode_text)`` parses frames and calls ``queue.feed_data(msg, size)`` for each
  (a ``cpdef`` method, so a Python subclass of ``WebSocketDataQueue`` can take
  them) and ``queue.set_exception(exc)`` on a protocol error
  (``WebSocketError`` with a close code, e.g. 1009 for an oversized frame).
* ``aiohttp._websocket.writer.WebSocketWriter._write_websocket_frame(payload,
  opcode, rsv)``: the synchronous frame write that ``send_frame`` performs for
  uncompressed frames; flow control is done here with ``BaseProtocol``'s
  ``pause_writing``/``resume_writing``/``_drain_helper``.
* ``WebSocketResponse.prepare()`` has no suspension point between writing the
  101 and returning (unless the transport is paused, which a fresh connection
  is not), so no client bytes reach aiohttp's parser before ``attach`` swaps
  the transport's protocol (RFC 6455 4.1 forbids clients to send before the
  101 anyway).
* ``RequestHandler`` closes ``self.transport`` when the handler's response is
  finished, unless it is ``None``; its ``connection_lost()`` drops the request
  and removes it from ``Server._connections`` once its task ends. The
  detached response's ``write_eof()`` (which would otherwise send a close
  frame) clears that attribute and calls ``connection_lost(None)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp._websocket.helpers import PACK_CLOSE_CODE
from aiohttp._websocket.models import WebSocketError
from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader
from aiohttp._websocket.writer import WebSocketWriter
from aiohttp.base_protocol import BaseProtocol
from aiohttp.web_protocol import RequestHandler

from protocol.codec import SUBPROTOCOLS, Codec, codec_for
from protocol.codes import CLOSE_REASONS, CloseCode

log = logging.getLogger(__name__)

SEND_QUEUE_LIMIT: Final = 256  # frames waiting for one socket before it counts as slow
CLOSE_TIMEOUT_SECONDS: Final = 2.0  # how long a closing peer gets to answer our close frame
PING_BATCH: Final = 2000  # sockets pinged before the heartbeat yields to the loop

_OPEN: Final = 0
_CLOSING: Final = 1  # our close frame is out; waiting for the peer's
_CLOSED: Final = 2

FrameHandler = Callable[["WebSocketConnection", "str | bytes"], None]
CloseHandler = Callable[["WebSocketConnection"], None]


def _close_payload(code: int) -> bytes:
    try:
        reason = CLOSE_REASONS.get(CloseCode(code), "")
    except ValueError:
        reason = ""
    return PACK_CLOSE_CODE(code) + reason.encode()


class DetachedWebSocketResponse(web.WebSocketResponse):
    """A WebSocketResponse whose connection lives on without it.

    aiohttp does the handshake (subprotocol, ``Sec-WebSocket-Accept``, 101);
    :meth:`LiveSockets.attach` then moves the connection to a
    :class:`WebSocketConnection`. When the handler returns, aiohttp "finishes"
    the response with ``write_eof()``: instead of closing the WebSocket, that
    releases aiohttp's request handler without closing the transport.
    """

    _handed_over: RequestHandler | None = None

    async def write_eof(self) -> None:  # type: ignore[override]
        handler = self._handed_over
        if handler is None:
            await super().write_eof()
            return
        self._handed_over = None
        # The handler no longer owns the transport: with ``transport`` None it
        # neither closes it when its task ends nor on server shutdown, and
        # connection_lost() drops its request and leaves Server._connections.
        handler.transport = None
        handler.connection_lost(None)


class _FrameSink(WebSocketDataQueue):
    """Where every connection's reader puts frames: straight to the connection.

    One sink serves all connections of a :class:`LiveSockets`: parsing is
    synchronous inside ``data_received``, which points ``target`` at the
    connection being fed first. Replaces aiohttp's per-socket message queue
    (a deque, a waiter and flow-control state) with a function call.
    """

    __slots__ = ("target",)

    def __init__(self, protocol: BaseProtocol, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(protocol, 0, loop=loop)
        self.target: WebSocketConnection | None = None

    def feed_data(self, data: Any, size: int) -> None:
        if self.target is not None:
            self.target._frame_received(data)

    def set_exception(self, exc: BaseException, exc_cause: BaseException | None = None) -> None:
        if self.target is not None:
            self.target._protocol_error(exc)

    def feed_eof(self) -> None:
        pass


class WebSocketConnection(BaseProtocol):
    """One accepted WebSocket after the handshake, with a bounded send queue.

    Frames are written straight to the transport while it accepts them; once
    the transport pauses writing (its buffer is full), frames wait in a queue
    drained by a short-lived task, and a socket whose queue overflows is
    closed with ``4008 slow consumer``. Incoming text and binary frames go to
    ``on_frame(conn, data)``; pings are answered; a close frame is answered
    and the transport closed.
    """

    __slots__ = (
        "_closer",
        "_closing_waiter",
        "_drainer",
        "_on_frame",
        "_owner",
        "_queue",
        "_reader",
        "_silent",
        "_state",
        "_writer",
        "channel",
        "codec",
        "strikes",
        "tag",
    )

    def __init__(
        self,
        owner: LiveSockets,
        transport: asyncio.Transport,
        codec: Codec,
        tag: str,
        on_frame: FrameHandler,
        max_frame_bytes: int,
    ) -> None:
        super().__init__(owner.loop)
        self._upgraded = True  # BaseProtocol: no HTTP parser to pause
        self.transport = transport
        self._owner = owner
        self.codec = codec
        # What authenticated the socket (e.g. the session secret's hash), so
        # the owner can close exactly the sockets a revoked credential opened.
        self.tag = tag
        self.channel = ""  # the hub channel it listens on, once joined
        self.strikes = 0  # bad frames so far (the command handler's policy)
        self._on_frame = on_frame
        self._reader = WebSocketReader(owner.sink, max_frame_bytes, False, True)
        self._writer = WebSocketWriter(self, transport)
        self._queue: deque[bytes] | None = None  # only while backed up
        self._drainer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._closing_waiter: asyncio.Future[None] | None = None
        self._silent = False  # pinged, and nothing heard since
        self._state = _OPEN

    # -- the interface the hub uses ------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._state != _OPEN or self._closer is not None

    @property
    def queued(self) -> int:
        return len(self._queue) if self._queue else 0

    def send(self, frame: bytes) -> None:
        """Send an encoded frame now, or queue it while the peer is slow; never blocks."""
        if self.closed:
            return
        queue = self._queue
        if not queue and not self._paused:
            self._write(frame, WSMsgType.BINARY if self.codec.binary else WSMsgType.TEXT)
            return
        if queue is None:
            queue = self._queue = deque()
        if len(queue) >= SEND_QUEUE_LIMIT:
            self.close_soon(CloseCode.SLOW_CONSUMER)
            return
        queue.append(frame)
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())

    def send_message(self, message: dict[str, Any]) -> None:
        self.send(self.codec.encode(message))

    async def flush(self) -> None:
        """Wait until queued frames are handed to the transport (e.g. before a close)."""
        drainer = self._drainer
        if drainer is not None and drainer is not asyncio.current_task():
            await asyncio.wait([drainer], timeout=CLOSE_TIMEOUT_SECONDS)

    def close_soon(self, code: int, *, drop_queued: bool = True) -> None:
        """Close in the background with ``code`` (idempotent); by default queued frames are dropped."""
        if self.closed:
            return
        if drop_queued:
            self._queue = None
        self._closer = asyncio.create_task(self._close_after(code, drop_queued))

    async def _close_after(self, code: int, drop_queued: bool) -> None:
        if not drop_queued:
            await self.flush()
        await self.close(code)

    async def close(self, code: int = CloseCode.NORMAL) -> None:
        """Send a close frame, wait briefly for the peer's, then close the TCP connection."""
        if self._state == _OPEN:
            self._state = _CLOSING
            self._queue = None
            drainer = self._drainer
            if drainer is not None and drainer is not asyncio.current_task():
                drainer.cancel()
            self._write(_close_payload(code), WSMsgType.CLOSE)
        if self._state == _CLOSED:
            return
        waiter = self._closing_waiter
        if waiter is None:
            waiter = self._closing_waiter = self._loop.create_future()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                await asyncio.shield(waiter)
        except TimeoutError:
            self.abort()  # the peer does not answer or does not read

    def abort(self) -> None:
        """Drop the TCP connection without a close handshake."""
        transport = self.transport
        if transport is not None:
            transport.abort()
        self._finished()

    # -- asyncio.Protocol ------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._silent = False
        if self._state == _CLOSED:
            return
        sink = self._owner.sink
        sink.target = self
        try:
            self._reader.feed_data(data)
        finally:
            sink.target = None

    def eof_received(self) -> bool:
        return False  # let the transport close; connection_lost cleans up

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)  # transport = None, wakes a paused drainer
        self._finished()

    # -- internals -------------------------------------------------------------------

    def _frame_received(self, msg: Any) -> None:
        kind = msg.type
        if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
            if self._state == _OPEN:
                try:
                    self._on_frame(self, msg.data)
                except Exception:
                    log.exception("frame handler failed")
                    self.close_soon(CloseCode.INTERNAL_ERROR)
        elif kind is WSMsgType.PING:
            if not self._paused:  # a peer that does not read gets no pongs piling up
                self._write(msg.data, WSMsgType.PONG)
        elif kind is WSMsgType.CLOSE:
            if self._state == _OPEN:  # the peer closes: answer, then hang up
                self._state = _CLOSING
                self._queue = None
                self._write(PACK_CLOSE_CODE(msg.data or WSCloseCode.OK), WSMsgType.CLOSE)
            transport = self.transport
            if transport is not None:
                transport.close()
            self._finished()
        # PONG: receiving anything already counted as a sign of life

    def _protocol_error(self, exc: BaseException) -> None:
        code = exc.code if isinstance(exc, WebSocketError) else WSCloseCode.PROTOCOL_ERROR
        if self._state == _OPEN and self._closer is None:
            self._queue = None
            self._closer = asyncio.create_task(self.close(code))

    def _write(self, payload: bytes, opcode: int) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        try:
            self._writer._write_websocket_frame(payload, opcode, 0)
        except ConnectionError:
            self._queue = None

    async def _drain(self) -> None:
        opcode = WSMsgType.BINARY if self.codec.binary else WSMsgType.TEXT
        try:
            while self._queue and self._state == _OPEN:
                if self._paused:
                    await self._drain_helper()
                    continue
                self._write(self._queue.popleft(), opcode)
        except ConnectionError:
            self._queue = None  # the peer is gone; connection_lost cleans up
        finally:
            self._drainer = None
            if not self._queue:
                self._queue = None

    def _ping(self) -> None:
        """Heartbeat: drop the socket if the last ping went unanswered, else ping again."""
        if self._state != _OPEN:
            return
        if self._silent:
            log.debug("no pong within the heartbeat interval; dropping the socket")
            self.abort()
            return
        self._silent = True
        self._write(b"", WSMsgType.PING)

    def _finished(self) -> None:
        if self._state == _CLOSED:
            return
        self._state = _CLOSED
        self._queue = None
        drainer = self._drainer
        if drainer is not None and drainer is not asyncio.current_task():
            drainer.cancel()
        waiter = self._closing_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._owner._forget(self)


class LiveSockets:
    """The detached WebSockets of one app: their shared frame sink and one heartbeat.

    Every ``heartbeat_seconds`` one task pings every open socket; a socket
    that has not sent anything (a pong or any frame) since the previous ping
    is dropped, so a dead peer is noticed within two intervals. The task runs
    only while there are sockets.
    """

    def __init__(self, on_close: CloseHandler | None = None) -> None:
        self._on_close = on_close
        self._sockets: set[WebSocketConnection] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._sink: _FrameSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.heartbeat_seconds: float | None = None

    def __len__(self) -> int:
        return len(self._sockets)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    @property
    def sink(self) -> _FrameSink:
        if self._sink is None:
            self._sink = _FrameSink(BaseProtocol(self.loop), self.loop)
        return self._sink

    def attach(
        self,
        request: web.Request,
        ws: DetachedWebSocketResponse,
        codec: Codec,
        tag: str,
        on_frame: FrameHandler,
        *,
        max_frame_bytes: int,
        heartbeat_seconds: float | None,
    ) -> WebSocketConnection:
        """Take over a just-prepared WebSocket's connection (call with no await after prepare)."""
        transport = request.transport
        handler = request.protocol
        if not isinstance(handler, RequestHandler):
            raise TypeError(f"unexpected protocol {type(handler).__name__}")
        if not ws.prepared or transport is None or transport.is_closing():
            raise ConnectionResetError("the connection is gone")
        conn = WebSocketConnection(self, transport, codec, tag, on_frame, max_frame_bytes)
        transport.set_protocol(conn)
        ws._handed_over = handler
        self._sockets.add(conn)
        if heartbeat_seconds:
            self.heartbeat_seconds = heartbeat_seconds
            if self._heartbeat is None:
                self._heartbeat = asyncio.create_task(self._beat(), name="ws-heartbeat")
        return conn

    async def accept(
        self,
        request: web.Request,
        tag: str,
        on_frame: FrameHandler,
        *,
        max_frame_bytes: int,
        heartbeat_seconds: float | None,
    ) -> tuple[DetachedWebSocketResponse, WebSocketConnection | None]:
        """Upgrade the request (JSON or msgpack subprotocol) and take the socket
        over; the connection is None when the client left during the handshake."""
        ws = DetachedWebSocketResponse(protocols=SUBPROTOCOLS, max_msg_size=max_frame_bytes, compress=False)
        await ws.prepare(request)
        try:
            conn = self.attach(
                request,
                ws,
                codec_for(ws.ws_protocol),
                tag,
                on_frame,
                max_frame_bytes=max_frame_bytes,
                heartbeat_seconds=heartbeat_seconds,
            )
        except ConnectionResetError:
            return ws, None
        return ws, conn

    def _forget(self, conn: WebSocketConnection) -> None:
        if conn not in self._sockets:
            return
        self._sockets.discard(conn)
        if not self._sockets and self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        if self._on_close is not None:
            try:
                self._on_close(conn)
            except Exception:
                log.exception("socket close handler failed")

    async def _beat(self) -> None:
        while self._sockets and self.heartbeat_seconds:
            await asyncio.sleep(self.heartbeat_seconds)
            for i, conn in enumerate(tuple(self._sockets), 1):
                conn._ping()
                if i % PING_BATCH == 0:
                    await asyncio.sleep(0)

    async def close_all(self, code: int) -> None:
        await asyncio.gather(*(c.close(code) for c in tuple(self._sockets)), return_exceptions=True)
        task = self._heartbeat
        if task is not None:
            self._heartbeat = None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
