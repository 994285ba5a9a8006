"""One load-generator process for ``bench.scale``: many sockets, little CPU.

Started by ``bench/scale.py`` as ``python -m bench.scale_gen`` and driven over
stdin/stdout, one JSON object per line each way (a command in, one reply
out). It holds thousands of proximity WebSockets and drives ``POST /match``
over a few keep-alive HTTP/1.1 connections, with hand-written asyncio
protocols on uvloop instead of aiohttp's client: a socket is one small
protocol object with no task, a nudge frame costs a buffer slice, a dict
lookup and two increments, and a request is one pre-formatted write. That
keeps the generator's CPU small next to the server's on a 2-core machine
(the orchestrator measures it from ``/proc`` and reports it).

Every nudge is accounted for: each ``/match`` answered with
``"nudge_sent": true`` adds one expected frame to the socket of each of the
two tokens, each received frame is checked (a text frame whose JSON is a
``nudge`` with the categories the match reported) and counted on its socket,
and ``drain`` compares the two per socket (missing, extra), so events/s only
counts frames that really arrived, and a loss cannot hide behind a total.

Commands (``{"cmd": ...}``), each answered with ``{"ok": true, ...}`` or
``{"ok": false, "error": ...}``:

* ``setup``: ``url``, ``tag``, ``sessions``, ``src`` (source address to bind,
  e.g. ``127.0.0.12``: each generator gets its own, so one loopback source
  address never runs out of ephemeral ports) — register that many sessions;
* ``open``: ``total`` — open WebSockets until ``total`` are open (the first
  ``total`` sessions);
* ``start``: ``connections`` — closed-loop ``/match`` load over fresh pairs of
  the open sockets until ``stop``; ``burst``: ``requests``, ``connections`` —
  exactly that many, then reply;
* ``mark``: counters now; ``stop``: stop the load, wait for in-flight requests,
  counters; ``drain``: ``wait_s`` — wait until every expected nudge arrived
  (or the timeout), then the per-socket verification;
* ``close``: close every socket (1000) and exit.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import random
import resource
import socket
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, Final, cast
from urllib.parse import urlsplit

import orjson
import uvloop

IP_BIND_ADDRESS_NO_PORT: Final = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
WS_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
INTERESTS: Final = ["devops", "hardstyle"]
HANDSHAKE_TIMEOUT_S: Final = 15.0
REQUEST_TIMEOUT_S: Final = 30.0
OPEN_CONCURRENCY: Final = 200
REGISTER_CONNECTIONS: Final = 32

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def client_frame(opcode: int, payload: bytes = b"") -> bytes:
    """A masked client frame (payloads here are small control payloads)."""
    key = os.urandom(4)
    masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + key + masked


async def connect(
    loop: asyncio.AbstractEventLoop, factory: Any, host: str, port: int, src: str | None
) -> tuple[asyncio.Transport, Any]:
    """TCP connect from ``src`` (port picked at connect time, so ports are per destination)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if src:
            sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((src, 0))
        await loop.sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    transport, protocol = await loop.create_connection(factory, sock=sock)
    return transport, protocol  # type: ignore[return-value]


class HttpError(Exception):
    pass


class HttpConn(asyncio.Protocol):
    """A keep-alive HTTP/1.1 client connection: one request at a time, Content-Length bodies."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        waiter = self.waiter
        if waiter is None:
            return
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buf[:end]).lower()
        try:
            status = int(head[9:12])
            i = head.index(b"\r\ncontent-length:") + 17
            j = head.find(b"\r\n", i)
            length = int(head[i : j if j >= 0 else len(head)])
        except ValueError:
            self.waiter = None
            waiter.set_exception(HttpError(f"unparsable response head {bytes(buf[:200])!r}"))
            return
        total = end + 4 + length
        if len(buf) < total:
            return
        body = bytes(buf[end + 4 : total])
        del buf[:total]
        self.waiter = None
        if not waiter.done():
            waiter.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionResetError("server closed the connection"))
        self.waiter = None

    async def request(self, data: bytes) -> tuple[int, bytes]:
        if self.closed or self.transport is None:
            raise ConnectionResetError("connection closed")
        fut: asyncio.Future[tuple[int, bytes]] = self.loop.create_future()
        self.waiter = fut
        self.transport.write(data)
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            return await fut

    @property
    def local(self) -> tuple[str, int] | None:
        if self.transport is None:
            return None
        name = self.transport.get_extra_info("sockname")
        return (str(name[0]), int(name[1])) if name else None


def post(host: str, path: str, body: bytes, secret: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {secret}\r\n" if secret else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class WsConn(asyncio.Protocol):
    """A proximity WebSocket: handshake, then frames parsed in ``data_received`` (no task)."""

    __slots__ = (
        "_accept",
        "_request",
        "buf",
        "close_code",
        "closed",
        "expected",
        "gen",
        "handshake",
        "open",
        "received",
        "secret",
        "token",
        "transport",
    )

    def __init__(self, gen: Generator, token: str, secret: str, request: bytes, accept: bytes) -> None:
        self.gen = gen
        self.token = token
        self.secret = secret
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.handshake: asyncio.Future[None] = gen.loop.create_future()
        self.open = False
        self.closed = False
        self.close_code: int | None = None
        self.expected = 0
        self.received = 0
        self._request = request
        self._accept = accept

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass
        self.transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        if self.open:
            if self.buf:
                self.buf += data
                self._frames(self.buf)
            else:
                self._frames(data)
            return
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end])
        rest = bytes(self.buf[end + 4 :])
        self.buf = bytearray()
        status = head[9:12].decode(errors="replace")
        if status != "101" or b"sec-websocket-accept: " + self._accept not in head.lower():
            if not self.handshake.done():
                self.handshake.set_exception(HttpError(f"handshake_{status}"))
            self._abort()
            return
        self.open = True
        self._request = self._accept = b""
        if not self.handshake.done():
            self.handshake.set_result(None)
        if rest:
            self._frames(rest)

    def _frames(self, data: bytes | bytearray) -> None:
        pos, n = 0, len(data)
        while n - pos >= 2:
            b0, b1 = data[pos], data[pos + 1]
            length, hl = b1 & 0x7F, 2
            if length == 126:
                if n - pos < 4:
                    break
                length, hl = int.from_bytes(data[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, hl = int.from_bytes(data[pos + 2 : pos + 10], "big"), 10
            if n - pos < hl + length:
                break
            payload = bytes(data[pos + hl : pos + hl + length])
            pos += hl + length
            opcode = b0 & 0x0F
            if b1 & 0x80 or not b0 & 0x80:  # masked or fragmented: not what this server sends
                self.gen.bad_frames["protocol"] += 1
            elif opcode == OP_TEXT:
                self.gen.on_text(self, payload)
            elif opcode == OP_PING:
                if self.transport is not None:
                    self.transport.write(client_frame(OP_PONG, payload))
                self.gen.pings += 1
            elif opcode == OP_CLOSE:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                if self.transport is not None and not self.closed:
                    self.transport.write(client_frame(OP_CLOSE, payload[:2]))
                self._abort()
                return
            elif opcode != OP_PONG:
                self.gen.bad_frames[f"opcode_{opcode}"] += 1
        rest = data[pos:] if pos < n else b""
        self.buf = bytearray(rest) if rest else bytearray()

    def _abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionResetError("closed during the handshake"))

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(client_frame(OP_CLOSE, (1000).to_bytes(2, "big")))
            self._abort()


class Generator:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.host = "127.0.0.1"
        self.port = 0
        self.src: str | None = None
        self.sessions: list[tuple[str, str]] = []
        self.conns: list[WsConn] = []
        self.good_payloads: set[bytes] = set()
        self.reported_categories: set[tuple[str, ...]] = set()
        self.frame_categories: set[tuple[str, ...]] = set()
        self.bad_frames: Counter[str] = Counter()
        self.http_errors: Counter[str] = Counter()
        self.open_errors: Counter[str] = Counter()
        self.pings = 0
        self.received = 0
        self.expected = 0
        self.requests = 0
        self.matched = 0
        self.nudged = 0
        self.running = False
        self.load_tasks: list[asyncio.Task[None]] = []
        self.http_conns: list[HttpConn] = []
        self.pairs: Iterator[tuple[int, int]] = iter(())
        self.live: list[WsConn] = []

    # ------------------------------------------------------------------ frames

    def on_text(self, conn: WsConn, payload: bytes) -> None:
        if payload not in self.good_payloads:
            try:
                msg = orjson.loads(payload)
            except orjson.JSONDecodeError:
                self.bad_frames["not_json"] += 1
                return
            cats = msg.get("shared_interests") if isinstance(msg, dict) else None
            if msg.get("type") != "nudge" or not isinstance(cats, list) or not cats:
                self.bad_frames[f"type_{msg.get('type') if isinstance(msg, dict) else '?'}"] += 1
                return
            self.frame_categories.add(tuple(cats))
            self.good_payloads.add(payload)
        conn.received += 1
        self.received += 1

    # ------------------------------------------------------------------ setup

    async def setup(self, url: str, tag: str, sessions: int, src: str | None) -> dict[str, Any]:
        parts = urlsplit(url)
        self.host, self.port, self.src = parts.hostname or "127.0.0.1", parts.port or 80, src
        t0 = time.perf_counter()
        todo = iter(range(sessions))
        out: dict[int, tuple[str, str]] = {}
        errors: Counter[str] = Counter()
        host = f"{self.host}:{self.port}"

        async def worker() -> None:
            _, conn = await connect(self.loop, lambda: HttpConn(self.loop), self.host, self.port, self.src)
            try:
                for i in todo:
                    token = f"{tag}-{i:07x}"
                    body = orjson.dumps({"ble_token": token, "interests": INTERESTS})
                    for _attempt in range(3):
                        status, raw = await conn.request(post(host, "/session", body))
                        if status == 201:
                            out[i] = (token, str(orjson.loads(raw)["session_id"]))
                            break
                        errors[f"session_{status}"] += 1
                        await asyncio.sleep(0.2)
            finally:
                if conn.transport is not None:
                    conn.transport.close()

        await asyncio.gather(*(worker() for _ in range(min(REGISTER_CONNECTIONS, max(sessions, 1)))))
        self.sessions = [out[i] for i in sorted(out)]
        return {"registered": len(self.sessions), "errors": dict(errors), "seconds": time.perf_counter() - t0}

    async def open(self, total: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        want = self.sessions[len(self.conns) : total]
        sem = asyncio.Semaphore(OPEN_CONCURRENCY)
        opened: list[WsConn | None] = [None] * len(want)
        host = f"{self.host}:{self.port}"

        async def one(k: int, token: str, secret: str) -> None:
            key = base64.b64encode(os.urandom(16))
            accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).lower()  # noqa: S324 (RFC 6455)
            request = (
                f"GET /ws/{token}?session_id={secret} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
            async with sem:
                for attempt in range(2):
                    conn = WsConn(self, token, secret, request, accept)
                    try:
                        await connect(self.loop, lambda c=conn: c, self.host, self.port, self.src)  # type: ignore[misc]
                        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                            await conn.handshake
                        opened[k] = conn
                        return
                    except HttpError as exc:
                        self.open_errors[str(exc)] += 1
                        return
                    except (OSError, TimeoutError) as exc:
                        conn._abort()
                        if attempt:
                            errno = f"_{exc.errno}" if isinstance(exc, OSError) else ""
                            self.open_errors[type(exc).__name__ + errno] += 1
                            return
                        await asyncio.sleep(0.2)

        await asyncio.gather(*(one(k, t, s) for k, (t, s) in enumerate(want)))
        self.conns += [conn for conn in opened if conn is not None]
        return {
            "open": len(self.conns),
            "alive": self.alive(),
            "errors": dict(self.open_errors),
            "seconds": time.perf_counter() - t0,
        }

    def alive(self) -> int:
        return sum(1 for c in self.conns if not c.closed)

    # ------------------------------------------------------------------ load

    def _pair_iter(self, live: list[WsConn]) -> Iterator[tuple[int, int]]:
        """Every unordered pair of the live sockets once; each round of ``step`` uses each socket twice."""
        n = len(live)
        for step in range(1, (n + 1) // 2):
            for i in range(n):
                yield i, (i + step) % n

    async def _client(self, conn: HttpConn, limit: list[int] | None) -> None:
        host = f"{self.host}:{self.port}"
        live = self.live
        while self.running:
            if limit is not None:
                if limit[0] <= 0:
                    return
                limit[0] -= 1
            try:
                a, b = next(self.pairs)
            except StopIteration:
                self.http_errors["pairs_exhausted"] += 1
                return
            ca, cb = live[a], live[b]
            body = b'{"own_token":"%s","detected_token":"%s"}' % (ca.token.encode(), cb.token.encode())
            try:
                status, raw = await conn.request(post(host, "/match", body, ca.secret))
            except (OSError, TimeoutError, HttpError) as exc:
                self.http_errors[type(exc).__name__] += 1
                if conn.closed:
                    return
                continue
            self.requests += 1
            if status != 200:
                self.http_errors[f"match_{status}"] += 1
                continue
            reply = orjson.loads(raw)
            if reply.get("match"):
                self.matched += 1
                self.reported_categories.add(tuple(reply.get("shared_interests") or ()))
            if reply.get("nudge_sent"):
                self.nudged += 1
                ca.expected += 1
                cb.expected += 1
                self.expected += 2

    def _random_pairs(self) -> Iterator[tuple[int, int]]:
        n = len(self.live)
        while n >= 2:
            a, b = random.randrange(n), random.randrange(n - 1)
            yield a, b + 1 if b >= a else b

    async def _start(self, connections: int, limit: list[int] | None) -> None:
        """Sequential pairs for a timed run (each pair fresh); random pairs of the sockets open now for a burst."""
        self.live = [c for c in self.conns if not c.closed]
        self.pairs = self._pair_iter(self.live) if limit is None else self._random_pairs()
        results = await asyncio.gather(
            *(
                connect(self.loop, lambda: HttpConn(self.loop), self.host, self.port, self.src)
                for _ in range(connections)
            )
        )
        self.http_conns = [proto for _, proto in results]
        self.running = True
        self.load_tasks = [asyncio.create_task(self._client(c, limit)) for c in self.http_conns]

    async def start(self, connections: int) -> dict[str, Any]:
        await self._start(connections, None)
        return {"http_local": [c.local for c in self.http_conns], **self.counters()}

    async def burst(self, requests: int, connections: int) -> dict[str, Any]:
        await self._start(connections, [requests])
        await asyncio.gather(*self.load_tasks)
        return await self.stop()

    async def stop(self) -> dict[str, Any]:
        self.running = False
        await asyncio.gather(*self.load_tasks, return_exceptions=True)
        self.load_tasks = []
        for c in self.http_conns:
            if c.transport is not None:
                c.transport.close()
        self.http_conns = []
        return self.counters()

    def counters(self) -> dict[str, Any]:
        return {
            "t": time.monotonic(),
            "requests": self.requests,
            "matched": self.matched,
            "nudged": self.nudged,
            "expected": self.expected,
            "received": self.received,
            "http_errors": dict(self.http_errors),
            "bad_frames": dict(self.bad_frames),
            "pings": self.pings,
        }

    async def drain(self, wait_s: float) -> dict[str, Any]:
        t0 = time.monotonic()
        deadline = t0 + wait_s
        while self.received < self.expected and time.monotonic() < deadline:  # noqa: ASYNC110 (polls counters)
            await asyncio.sleep(0.05)
        missing = extra = sockets_short = sockets_over = 0
        for c in self.conns:
            if c.received < c.expected:
                missing += c.expected - c.received
                sockets_short += 1
            elif c.received > c.expected:
                extra += c.received - c.expected
                sockets_over += 1
        closes = Counter(str(c.close_code) for c in self.conns if c.closed)
        return {
            **self.counters(),
            "drain_s": time.monotonic() - t0,
            "missing": missing,
            "extra": extra,
            "sockets_short": sockets_short,
            "sockets_over": sockets_over,
            "open": len(self.conns),
            "alive": self.alive(),
            "closed_codes": dict(closes),
            "categories_ok": self.frame_categories <= self.reported_categories,
            "frame_categories": sorted(self.frame_categories),
        }

    async def close(self) -> dict[str, Any]:
        for c in self.conns:
            c.close()
        await asyncio.sleep(0.5)
        return {"closed": len(self.conns)}


async def serve() -> None:
    loop = asyncio.get_running_loop()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    gen = Generator(loop)

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.buffer.write(orjson.dumps(obj) + b"\n")
        sys.stdout.buffer.flush()

    reply({"ok": True, "pid": os.getpid(), "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)})
    while line := await reader.readline():
        cmd = orjson.loads(line)
        name = cmd.pop("cmd")
        try:
            if name == "setup":
                out = await gen.setup(cmd["url"], cmd["tag"], cmd["sessions"], cmd.get("src"))
            elif name == "open":
                out = await gen.open(cmd["total"])
            elif name == "start":
                out = await gen.start(cmd["connections"])
            elif name == "burst":
                out = await gen.burst(cmd["requests"], cmd["connections"])
            elif name == "mark":
                out = {**gen.counters(), "alive": gen.alive()}
            elif name == "stop":
                out = await gen.stop()
            elif name == "drain":
                out = await gen.drain(cmd["wait_s"])
            elif name == "close":
                reply({"ok": True, **(await gen.close())})
                return
            else:
                raise ValueError(f"unknown command {name!r}")
        except Exception as exc:
            reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
            continue
        reply({"ok": True, **out})


def main() -> int:
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
