"""Helpers for the delivery tests: cutting the pub/sub connections of chosen
clients (by client name, or by the server processes that hold them), so that
other tests' listeners on the same Redis are left alone."""

from __future__ import annotations

from collections.abc import Iterable

import psutil
import redis.asyncio as aioredis


def local_ports_to(pids: Iterable[int], redis_port: int) -> set[int]:
    """The local ports of the processes' TCP connections to Redis."""
    ports = set()
    for pid in pids:
        for conn in psutil.Process(pid).net_connections(kind="tcp"):
            if conn.raddr and conn.raddr.port == redis_port:
                ports.add(conn.laddr.port)
    return ports


async def kill_pubsub_clients_of(
    admin: aioredis.Redis, *, name: str | None = None, pids: Iterable[int] = (), redis_port: int = 6379
) -> int:
    """``CLIENT KILL`` the pub/sub connections named ``name`` or held by ``pids``; how many."""
    ports = local_ports_to(pids, redis_port)
    killed = 0
    for entry in await admin.client_list(_type="pubsub"):
        port = int(str(entry["addr"]).rsplit(":", 1)[1])
        if (name is not None and entry.get("name") == name) or port in ports:
            killed += await admin.client_kill_filter(_id=entry["id"])
    return killed
