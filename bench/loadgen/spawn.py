"""Starting and stopping servers: ``run.py`` on a free loopback port in its own process
group (``--spawn``), stopping a process group gracefully, and a throwaway local Redis
Cluster for ``--redis-cluster``."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import aiohttp

from bench.loadgen.common import REPO_ROOT, BenchError, log
from bench.loadgen.redis_resp import flush_redis

#: A spawned server gets rate limits no benchmark reaches (unless --server-env sets them):
#: ``me`` registers one account per client from one address and reads ``/me`` in a loop.
BENCH_RATE_LIMIT_PER_MINUTE = "1000000000"

RATE_LIMIT_ENV = ("RATE_LIMIT_AUTH_PER_MINUTE", "RATE_LIMIT_API_PER_MINUTE")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass(slots=True)
class ServerOptions:
    database_url: str | None
    redis_url: str | None
    embedded: bool
    log_dir: Path
    ready_timeout_s: float
    extra_env: dict[str, str]
    script: str = "run.py"
    redis_cluster_url: str | None = None  # serve from a Redis Cluster instead of redis_url


def _open_log(path: Path) -> BinaryIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "wb")  # handed to the child; the caller closes it


async def stop_process_group(proc: asyncio.subprocess.Process, grace_s: float) -> None:
    """SIGTERM a server started with ``start_new_session`` and give it ``grace_s`` to
    stop gracefully; then clean up its process group (workers, embedded services)."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace_s)
        except TimeoutError:
            log(f"server pid={proc.pid} ignored SIGTERM for {grace_s:.0f}s; killing its process group")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        await asyncio.sleep(1.0)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), 5)
    log(f"server pid={proc.pid} stopped (exit code {proc.returncode})")


class SpawnedServer:
    """``python run.py --host 127.0.0.1 --port PORT`` (cwd: repo root), in its own process group."""

    def __init__(self, opts: ServerOptions) -> None:
        self.opts = opts
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.log_path = opts.log_dir / f"server-{self.port}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        env = dict(os.environ)
        if self.opts.embedded:
            env.pop("DATABASE_URL", None)
            env.pop("REDIS_URL", None)
        else:
            if self.opts.database_url:
                env["DATABASE_URL"] = self.opts.database_url
            if self.opts.redis_cluster_url:
                env.pop("REDIS_URL", None)
                env["REDIS_CLUSTER_URL"] = self.opts.redis_cluster_url
            elif self.opts.redis_url:
                env["REDIS_URL"] = self.opts.redis_url
                await flush_redis(self.opts.redis_url)
        env.setdefault("SESSION_TTL_SECONDS", "3600")
        for name in RATE_LIMIT_ENV:
            env.setdefault(name, BENCH_RATE_LIMIT_PER_MINUTE)
        env.update(self.opts.extra_env)
        env["PYTHONUNBUFFERED"] = "1"
        logf = _open_log(self.log_path)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                self.opts.script,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                cwd=REPO_ROOT,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=logf,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            logf.close()
        log(f"spawned server pid={self.proc.pid} on {self.url} (log: {self.log_path})")
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        assert self.proc is not None
        t0 = time.monotonic()
        deadline = t0 + self.opts.ready_timeout_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    raise BenchError(
                        f"server exited with code {self.proc.returncode} before /livez answered; "
                        f"log tail:\n{self.log_tail()}"
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                    async with http.get(f"{self.url}/livez") as resp:
                        if resp.status == 200:
                            log(f"server ready after {time.monotonic() - t0:.2f}s")
                            return
                await asyncio.sleep(0.1)
        await self.stop()
        raise BenchError(
            f"server did not answer /livez within {self.opts.ready_timeout_s}s; log tail:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    async def stop(self) -> None:
        if self.proc is not None:
            await stop_process_group(self.proc, grace_s=20.0)


@contextlib.contextmanager
def local_redis_cluster(enabled: bool) -> Iterator[str | None]:
    """``--redis-cluster``: a throwaway three-primary Redis Cluster for the run (its seed URL), or None."""
    if not enabled:
        yield None
        return
    from tests.redis_cluster import find_redis_server, running_cluster

    if find_redis_server() is None:
        raise BenchError("--redis-cluster needs redis-server 7 or newer (set REDIS_SERVER)")
    with running_cluster(Path(tempfile.mkdtemp(prefix="px-bench-cluster-"))) as cluster:
        log(f"Redis Cluster of {cluster.primaries} primaries on ports {cluster.ports}")
        yield cluster.url


def cluster_node_urls(seed_url: str) -> list[str]:
    """Every primary of the cluster (their CPU counts as the service's)."""
    import redis

    client = redis.RedisCluster.from_url(seed_url)
    try:
        return [f"redis://{node.host}:{node.port}" for node in client.get_primaries()]  # type: ignore[no-untyped-call]
    finally:
        client.close()
