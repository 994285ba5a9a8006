"""A multiplexed Redis connection for the hot path.

``POST /session`` and ``POST /match`` each run one script. With a pooled
client every concurrent request checks a connection out, writes its command
with its own system call, and reads its reply through a Python parser; the
flame graph of ``/match`` under load showed a third of the process's CPU in
that machinery. Here all concurrent requests share one connection:

* commands issued during one turn of the event loop are written together,
  with one ``write`` (Redis pipelines them for free);
* replies are parsed by hiredis (the C parser redis-py also uses) and handed,
  in order, to the futures waiting for them;
* a connection that breaks fails every command in flight with
  ``ConnectionError`` (the error middleware answers 503) and the next command
  reconnects; a reply that does not come within ``REPLY_TIMEOUT_SECONDS``
  breaks the connection the same way, so nothing waits forever.

Everything that is not the hot path keeps using redis-py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections import deque
from typing import Any, Final, cast
from urllib.parse import quote

import hiredis
from redis.connection import parse_url
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

CONNECT_TIMEOUT_SECONDS: Final = 2.0
REPLY_TIMEOUT_SECONDS: Final = 5.0
WATCHDOG_SECONDS: Final = 1.0
CLUSTER_SLOTS: Final = 16384

Arg = str | bytes | int


def script_sha(source: str) -> str:
    """The name Redis gives a script (EVALSHA)."""
    return hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 (Redis names scripts by SHA-1)


def encode_command(args: tuple[Arg, ...]) -> bytes:
    """RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int):
            data = b"%d" % arg
        else:
            data = arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _RespProtocol(asyncio.Protocol):
    def __init__(self, owner: MuxRedis) -> None:
        self._owner = owner
        self._reader = hiredis.Reader(notEnoughData=False, encoding="utf-8", errors="replace")
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports don't subclass asyncio's

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiting = self._owner._waiting
        while True:
            reply = reader.gets()
            if reply is False:
                return
            if not waiting:
                continue
            future, _ = waiting.popleft()
            if future.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(ResponseError(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._lost(self, exc)


class MuxRedis:
    """One shared connection; ``execute`` and ``evalsha`` are safe to call concurrently."""

    def __init__(self, url: str) -> None:
        self._params = parse_url(url)  # type: ignore[no-untyped-call]
        if "connection_class" in self._params and "path" not in self._params:
            raise ValueError("the multiplexed client supports redis:// and unix:// URLs")
        self._protocol: _RespProtocol | None = None
        self._connecting: asyncio.Future[_RespProtocol] | None = None
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._outbox: list[bytes] = []
        self._flush_scheduled = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._scripts: dict[str, str] = {}  # sha -> source

    async def execute(self, *args: Arg) -> Any:
        protocol = self._protocol or await self._connect()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((future, time.monotonic()))
        self._outbox.append(encode_command(args))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush, protocol)
        return await future

    def register_script(self, source: str) -> str:
        sha = script_sha(source)
        self._scripts[sha] = source
        return sha

    async def evalsha(self, sha: str, keys: list[str], args: list[Arg]) -> Any:
        try:
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        # First use on this Redis (or after a restart / SCRIPT FLUSH): load it once.
        await self.execute("SCRIPT", "LOAD", self._scripts[sha])
        return await self.execute("EVALSHA", sha, len(keys), *keys, *args)

    def _flush(self, protocol: _RespProtocol) -> None:
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, []
        if protocol is not self._protocol or protocol.transport is None:
            return  # the connection died; its waiters were failed already
        protocol.transport.write(b"".join(outbox))

    async def _connect(self) -> _RespProtocol:
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        try:
            return await asyncio.shield(self._connecting)
        finally:
            if self._connecting is not None and self._connecting.done():
                self._connecting = None

    async def _open(self) -> _RespProtocol:
        loop = asyncio.get_running_loop()
        p = self._params
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                if "path" in p:
                    _, protocol = await loop.create_unix_connection(lambda: _RespProtocol(self), p["path"])
                else:
                    _, protocol = await loop.create_connection(
                        lambda: _RespProtocol(self), p.get("host", "localhost"), p.get("port", 6379)
                    )
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {exc!r}") from exc
        assert protocol.transport is not None
        handshake: list[tuple[Arg, ...]] = []
        if p.get("password"):
            handshake.append(("AUTH", p.get("username") or "default", p["password"]))
        if p.get("db"):
            handshake.append(("SELECT", int(p["db"])))
        self._protocol = protocol
        try:
            for command in handshake:
                await self.execute(*command)
        except Exception:
            protocol.transport.close()
            self._protocol = None
            raise
        self._watchdog = loop.call_later(WATCHDOG_SECONDS, self._check_timeouts)
        return protocol

    def _check_timeouts(self) -> None:
        protocol = self._protocol
        if protocol is None:
            return
        if self._waiting and time.monotonic() - self._waiting[0][1] > REPLY_TIMEOUT_SECONDS:
            self._fail_all(RedisTimeoutError("Redis did not answer in time"))
            self._protocol = None
            if protocol.transport is not None:
                protocol.transport.abort()
            return
        self._watchdog = asyncio.get_running_loop().call_later(WATCHDOG_SECONDS, self._check_timeouts)

    def _lost(self, protocol: _RespProtocol, exc: Exception | None) -> None:
        if self._protocol is protocol:
            self._protocol = None
            if self._watchdog is not None:
                self._watchdog.cancel()
            self._fail_all(RedisConnectionError(f"connection to Redis lost: {exc!r}"))

    def _fail_all(self, exc: Exception) -> None:
        waiting, self._waiting = self._waiting, deque()
        self._outbox.clear()
        for future, _ in waiting:
            if not future.done():
                future.set_exception(exc)

    async def aclose(self) -> None:
        protocol, self._protocol = self._protocol, None
        if self._watchdog is not None:
            self._watchdog.cancel()
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
        self._fail_all(RedisConnectionError("client closed"))
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(BaseException):
                await self._connecting


class MuxCluster:
    """The hot path on a Redis Cluster: one multiplexed connection per primary.

    Commands are routed by the slot of their first key. The slot map comes
    from ``CLUSTER SLOTS``; a ``MOVED`` or ``ASK`` reply, or a node that
    cannot be reached, marks it stale, and the next command re-reads it (a
    redirected command is retried once, on the node that owns the slot now).
    """

    def __init__(self, url: str) -> None:
        params = parse_url(url)  # type: ignore[no-untyped-call]
        self._seed = (params.get("host", "localhost"), int(params.get("port", 6379)))
        self._auth = ""
        if params.get("password"):
            user = params.get("username") or "default"
            self._auth = f"{quote(user, safe='')}:{quote(params['password'], safe='')}@"
        self._slots: list[tuple[str, int]] = []
        self._known: list[tuple[str, int]] = []  # every node of the last slot map, replicas too
        self._nodes: dict[tuple[str, int], MuxRedis] = {}
        self._scripts: dict[str, str] = {}
        self._refreshing: asyncio.Future[None] | None = None

    def register_script(self, source: str) -> str:
        sha = script_sha(source)
        self._scripts[sha] = source
        for node in self._nodes.values():
            node.register_script(source)
        return sha

    async def execute_keyed(self, key: str, *args: Arg) -> Any:
        """Run a command on the node that owns ``key``."""
        return await self._routed(key, lambda node: node.execute(*args))

    async def evalsha(self, sha: str, keys: list[str], args: list[Arg]) -> Any:
        """Run a script whose keys all share the slot of ``keys[0]``."""
        return await self._routed(keys[0], lambda node: node.evalsha(sha, keys, args))

    async def _routed(self, key: str, call: Any) -> Any:
        slot = key_slot(key.encode())
        for attempt in range(2):
            if not self._slots:
                await self._refresh()
            node = self._node(self._slots[slot])
            try:
                return await call(node)
            except ResponseError as exc:
                if not str(exc).startswith(("MOVED ", "ASK ")):
                    raise
                self._slots = []  # resharded or failed over: learn the new map and retry once
                if attempt:
                    raise RedisConnectionError(f"the cluster's slots are moving: {exc}") from exc
            except (RedisConnectionError, RedisTimeoutError):
                self._slots = []
                raise
        raise AssertionError("unreachable")

    def _node(self, address: tuple[str, int]) -> MuxRedis:
        node = self._nodes.get(address)
        if node is None:
            node = MuxRedis(f"redis://{self._auth}{address[0]}:{address[1]}")
            for source in self._scripts.values():
                node.register_script(source)
            self._nodes[address] = node
        return node

    async def _refresh(self) -> None:
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._read_slots())
        try:
            await asyncio.shield(self._refreshing)
        finally:
            if self._refreshing is not None and self._refreshing.done():
                self._refreshing = None

    async def _read_slots(self) -> None:
        errors: list[Exception] = []
        candidates = [self._seed, *self._known, *self._nodes]
        for address in dict.fromkeys(candidates):  # in order, once each; the seed may be the node that died
            try:
                reply = await self._node(address).execute("CLUSTER", "SLOTS")
            except (RedisConnectionError, RedisTimeoutError, ResponseError) as exc:
                errors.append(exc)
                continue
            slots: list[tuple[str, int]] = [("", 0)] * CLUSTER_SLOTS
            known: list[tuple[str, int]] = []
            for start, end, primary, *replicas in reply:
                host = primary[0] or address[0]  # "" means "the host you asked"
                for slot in range(int(start), int(end) + 1):
                    slots[slot] = (host, int(primary[1]))
                known += [(node[0] or address[0], int(node[1])) for node in (primary, *replicas)]
            if any(port == 0 for _, port in slots):
                errors.append(RedisConnectionError("the cluster does not cover every slot"))
                continue
            self._slots, self._known = slots, known
            return
        raise RedisConnectionError(f"no cluster node answered CLUSTER SLOTS: {errors!r}")

    async def aclose(self) -> None:
        nodes, self._nodes = list(self._nodes.values()), {}
        for node in nodes:
            await node.aclose()
