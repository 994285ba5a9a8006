"""Helpers for the delivery tests: server processes to flood, devices that
record the event ids they receive, and cutting the pub/sub connections of
chosen clients (by client name, or by the server processes that hold them),
so that other tests' listeners on the same Redis are left alone."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis

from config.settings import Settings
from store.redis_client import process_client_name
from tests.auth_helpers import TEST_JWT_SECRET
from tests.servers import env_for, free_port, start_run_py, stop_process, wait_until_live

COMMAND_TIMEOUT_SECONDS = 10.0


def local_ports_to(pids: Iterable[int], redis_port: int) -> set[int]:
    """The local ports of the processes' TCP connections to ``redis_port`` (from /proc)."""
    ports = set()
    for pid in pids:
        proc = Path(f"/proc/{pid}")
        inodes = set()
        for fd in (proc / "fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        for table in ("tcp", "tcp6"):
            for line in (proc / "net" / table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], fields[9]
                if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == redis_port:
                    ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


async def kill_pubsub_clients_of(
    admin: aioredis.Redis, *, name: str | None = None, pids: Iterable[int] = (), redis_port: int = 6379
) -> int:
    """``CLIENT KILL`` the pub/sub connections named ``name`` or held by ``pids``; how many."""
    pids = list(pids)
    ports = local_ports_to(pids, redis_port)
    # Over a unix socket (the embedded Redis) there is no port to match: every
    # connection of a server process carries its name (store/redis_client.py).
    names = {process_client_name(pid) for pid in pids} | ({name} if name is not None else set())
    killed = 0
    for entry in await admin.client_list(_type="pubsub"):
        addr = str(entry["addr"])
        port = int(addr.rsplit(":", 1)[1]) if not addr.startswith("/") else -1
        if entry.get("name") in names or port in ports:
            killed += await admin.client_kill_filter(_id=entry["id"])
    return killed


@contextlib.asynccontextmanager
async def running_servers(settings: Settings, log_dir: Path, count: int, **env: str) -> AsyncIterator[list[Server]]:
    """``count`` server processes (``run.py``) on the test's schema and Redis prefix."""
    base_env = env_for(
        settings,
        JWT_SECRET=TEST_JWT_SECRET,
        PASSWORD_HASH_PROFILE="test",
        ACCESS_LOG="0",
        RATE_LIMIT_API_PER_MINUTE="1000000",
        RATE_LIMIT_MESSAGES_PER_MINUTE="1000000",
        **env,
    )
    servers: list[Server] = []
    try:
        for n in range(count):
            port = free_port()
            proc = start_run_py(port, base_env, log_dir / f"server{n}.log")
            servers.append(Server(f"http://127.0.0.1:{port}", proc))
        for server in servers:
            await wait_until_live(server.base, server.proc)
        yield servers
    finally:
        for server in servers:
            if server.proc.poll() is None:
                server.proc.send_signal(signal.SIGTERM)
        for server in servers:
            try:
                await asyncio.to_thread(server.proc.wait, 10)
            except subprocess.TimeoutExpired:
                stop_process(server.proc)


@dataclass(frozen=True, slots=True)
class Server:
    base: str
    proc: subprocess.Popen[bytes]

    @property
    def ws_url(self) -> str:
        return self.base.replace("http", "ws", 1) + "/ws"


class Device:
    """One socket of a user: sends commands, and records every durable event id it receives."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.event_ids: list[int] = []
        self.closed_with: int | None = None
        self._results: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._progress = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, http: aiohttp.ClientSession, server: Server, token: str) -> Device:
        ws = await http.ws_connect(server.ws_url, headers={"Authorization": f"Bearer {token}"}, max_msg_size=0)
        return cls(ws)

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            data = orjson.loads(msg.data)
            if data.get("type") == "result":
                future = self._results.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            elif isinstance(data.get("event_id"), int):
                self.event_ids.append(data["event_id"])
                self._progress.set()
        self.closed_with = self.ws.close_code
        self._progress.set()

    async def command(self, kind: str, **fields: Any) -> dict[str, Any]:
        self._next_id += 1
        cid = self._next_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._results[cid] = future
        await self.ws.send_bytes(orjson.dumps({"type": kind, "id": cid, **fields}))
        return await asyncio.wait_for(future, COMMAND_TIMEOUT_SECONDS)

    async def wait_for_id(self, event_id: int, within: float) -> None:
        """Until the device received ``event_id`` (or its socket closed)."""
        async with asyncio.timeout(within):
            while self.closed_with is None and not (self.event_ids and self.event_ids[-1] >= event_id):
                self._progress.clear()
                await self._progress.wait()

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader
