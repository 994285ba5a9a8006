"""Load generator and benchmark scenarios for proximity_server.

Usage (from the repository root)::

    python -m bench.loadgen SCENARIO [--connections 32] [--duration 10] [--warmup 3]
                                     [--repeat 3] [--url http://127.0.0.1:PORT | --spawn]
                                     [--pid PID] [--json FILE] [--redis-cluster]

Scenarios
---------
``livez``    N concurrent keep-alive clients hammer ``GET /livez`` (bare handler baseline).
``session``  N clients ``POST /session`` with fresh BLE tokens.
``match``    A pool of sessions is registered first, then ``livez`` and ``match``
             windows are run alternately ``--repeat`` times against the SAME server;
             medians and match/livez ratios (throughput and server CPU per request)
             are reported.
``nudge``    Push latency: ``POST /match`` (A detects B) -> nudge frame read on B's
             WebSocket, with C concurrent clients over freshly prepared pairs whose
             sockets are opened before the timed part.
``idle_ws``  Fresh server (``--spawn``): RSS growth per authenticated idle WebSocket
             for N sockets, then a sample of them must still receive a nudge.
``me``       One account (with a profile) per client; ``livez`` and ``GET /me``
             windows alternate ``--repeat`` times on the SAME server; reports the
             me/livez server-CPU-per-request ratio (the cost of an authenticated read).
``all``      livez+match (+session) and nudge at C=8 and C=32 on one spawned server,
             then idle_ws on a fresh one; prints a markdown summary table.

Every load loop is bounded both in count and in time, and only loopback targets
are accepted.  Server CPU is read from ``/proc/PID/stat`` (utime+stime of the server
process tree) around each measured window; machine CPU (``/proc/stat``) is recorded
as well so that a run disturbed by other work on the machine is visible.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import ipaddress
import math
import os
import platform
import random
import resource
import secrets
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import aiohttp
import orjson

REPO_ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"  # db 9 is used (and flushed) by others
MSGPACK_SUBPROTOCOL = "proximity.msgpack"

#: Interests that map to a taxonomy category on the server (the category is in brackets);
#: random 2-4 of them per session give a realistic mix of matching/non-matching pairs.
INTERESTS: tuple[str, ...] = (
    "devops",  # tech
    "coding",  # tech
    "hardstyle",  # music
    "jazz",  # music
    "philosophy",  # philosophy
    "running",  # fitness
    "yoga",  # fitness
    "hiking",  # outdoors
    "chess",  # gaming
    "photography",  # photography
    "cooking",  # food
    "painting",  # art
    "poetry",  # books
    "football",  # sports
    "astronomy",  # science
    "climbing",  # outdoors
)
#: Interests every nudge/idle pair shares, so a match is guaranteed.
SHARED_INTERESTS: tuple[str, ...] = ("devops", "hardstyle")

SERVICE_COMMS = frozenset({"redis-server", "postgres", "postmaster"})
JSON_HEADERS = {"Content-Type": "application/json"}
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)
#: A spawned server gets rate limits no benchmark reaches (unless --server-env sets them):
#: ``me`` registers one account per client from one address and reads ``/me`` in a loop.
BENCH_RATE_LIMIT_PER_MINUTE = "1000000000"
RATE_LIMIT_ENV = ("RATE_LIMIT_AUTH_PER_MINUTE", "RATE_LIMIT_API_PER_MINUTE")
BENCH_PASSWORD = "bench-passphrase-not-in-any-list-7Qx"  # noqa: S105 (a throwaway bench account)
BENCH_PROFILE: dict[str, Any] = {
    "display_name": "Bench",
    "birthdate": "1990-05-17",
    "gender": "woman",
    "interested_in": ["man", "woman"],
    "bio": "load generator account",
    "interests": ["devops", "jazz", "hiking"],
    "location": {"lat": 52.52, "lon": 13.405},
}

RequestFn = Callable[[aiohttp.ClientSession, int], Awaitable["str | None"]]


class BenchError(RuntimeError):
    """A benchmark could not be run (server missing, setup failed, ...)."""


def log(msg: str) -> None:
    """Progress messages go to stderr so stdout stays a clean report."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- /proc


@dataclasses.dataclass(frozen=True, slots=True)
class ProcInfo:
    pid: int
    ppid: int
    comm: str
    starttime: int
    ticks: int  # utime + stime, clock ticks


def read_proc_stat(pid: int) -> ProcInfo | None:
    """Parse /proc/PID/stat; utime and stime are fields 14 and 15 (clock ticks)."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    lpar, rpar = data.find(b"("), data.rfind(b")")
    if lpar < 0 or rpar < 0:
        return None
    comm = data[lpar + 1 : rpar].decode(errors="replace")
    rest = data[rpar + 2 :].split()  # rest[0] is field 3 (state)
    try:
        return ProcInfo(
            pid=pid,
            ppid=int(rest[1]),
            comm=comm,
            starttime=int(rest[19]),
            ticks=int(rest[11]) + int(rest[12]),
        )
    except (IndexError, ValueError):
        return None


def scan_procs() -> dict[int, ProcInfo]:
    procs: dict[int, ProcInfo] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = read_proc_stat(int(name))
            if info is not None:
                procs[info.pid] = info
    return procs


def descendants(procs: dict[int, ProcInfo], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    out: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in out:
                out.add(child)
                stack.append(child)
    return out


def split_server_tree(
    procs: dict[int, ProcInfo], root: int | None, service_roots: Sequence[int] = ()
) -> tuple[set[int], set[int]]:
    """(server pids, service pids).

    Server = root plus its python descendants (workers).  Services = every other
    descendant of root (embedded redis/postgres) plus ``service_roots`` and their
    descendants (the external Redis / PostgreSQL postmaster and its backends, found from
    the ports of REDIS_URL / DATABASE_URL).  Without service roots, every
    redis-server/postgres process on the machine counts as a service.
    """
    server: set[int] = set()
    services: set[int] = set()
    if service_roots:
        for sroot in service_roots:
            if sroot in procs:
                services |= {sroot, *descendants(procs, sroot)}
    else:
        services = {p.pid for p in procs.values() if p.comm in SERVICE_COMMS}
    if root is not None and root in procs:
        server.add(root)
        for pid in descendants(procs, root):
            if procs[pid].comm.startswith("python"):
                server.add(pid)
            else:
                services.add(pid)
    return server, services - server


def service_roots_for(urls: Sequence[str | None]) -> tuple[int, ...]:
    """PIDs listening on the ports of the given service URLs (loopback services only)."""
    roots: list[int] = []
    for url in urls:
        if not url:
            continue
        parts = urlsplit(url)
        default = 6379 if parts.scheme.startswith("redis") else 5432
        pid = pid_listening_on(parts.port or default)
        if pid is not None and pid not in roots:
            roots.append(pid)
    return tuple(roots)


def read_machine_cpu() -> tuple[int, int, int]:
    """(total, busy, steal) clock ticks over all CPUs from the first line of /proc/stat."""
    with open("/proc/stat", "rb") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    fields += [0] * (8 - len(fields))
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    total = user + nice + system + idle + iowait + irq + softirq + steal
    return total, total - idle - iowait, steal


@dataclasses.dataclass(slots=True)
class CpuSnapshot:
    t_ns: int
    procs: dict[int, ProcInfo]
    server: set[int]
    services: set[int]
    machine_total: int
    machine_busy: int
    machine_steal: int


def take_cpu_snapshot(server_pid: int | None, service_roots: Sequence[int] = ()) -> CpuSnapshot:
    procs = scan_procs()
    server, services = split_server_tree(procs, server_pid, service_roots)
    total, busy, steal = read_machine_cpu()
    return CpuSnapshot(time.perf_counter_ns(), procs, server, services, total, busy, steal)


def _ticks_delta(before: CpuSnapshot, after: CpuSnapshot, pids: set[int]) -> int:
    delta = 0
    for pid in pids:
        now = after.procs.get(pid)
        if now is None:
            continue
        then = before.procs.get(pid)
        if then is not None and then.starttime == now.starttime:
            delta += now.ticks - then.ticks
        else:  # started during the window
            delta += now.ticks
    return delta


@dataclasses.dataclass(slots=True)
class CpuWindow:
    """CPU consumed during one measured window (seconds of CPU, and cores busy)."""

    window_s: float
    server_cpu_s: float | None
    services_cpu_s: float
    client_cpu_s: float
    machine_busy_cores: float
    machine_cores: int
    other_busy_cores: float  # machine busy minus server, services and this client
    steal_pct: float
    server_us_per_req: float | None = None
    services_us_per_req: float | None = None
    client_us_per_req: float | None = None

    def per_request(self, requests: int) -> None:
        if requests <= 0:
            return
        if self.server_cpu_s is not None:
            self.server_us_per_req = self.server_cpu_s * 1e6 / requests
        self.services_us_per_req = self.services_cpu_s * 1e6 / requests
        self.client_us_per_req = self.client_cpu_s * 1e6 / requests


def cpu_window(before: CpuSnapshot, after: CpuSnapshot, server_known: bool) -> CpuWindow:
    window_s = max((after.t_ns - before.t_ns) / 1e9, 1e-9)
    server_s = _ticks_delta(before, after, after.server) / CLK_TCK
    services_s = _ticks_delta(before, after, after.services) / CLK_TCK
    client_s = _ticks_delta(before, after, {os.getpid()}) / CLK_TCK
    total = max(after.machine_total - before.machine_total, 1)
    busy_s = (after.machine_busy - before.machine_busy) / CLK_TCK
    accounted = server_s + services_s + client_s
    return CpuWindow(
        window_s=window_s,
        server_cpu_s=server_s if server_known else None,
        services_cpu_s=services_s,
        client_cpu_s=client_s,
        machine_busy_cores=busy_s / window_s,
        machine_cores=NCPU,
        other_busy_cores=max(0.0, (busy_s - accounted) / window_s),
        steal_pct=100.0 * (after.machine_steal - before.machine_steal) / total,
    )


def rss_kb(root: int) -> int:
    """VmRSS (KB) of the server: root plus its python descendants."""
    procs = scan_procs()
    server, _ = split_server_tree(procs, root)
    total = 0
    for pid in server or {root}:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
    return total


def max_open_files(pid: int) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                soft = line.split()[3]
                return -1 if soft == "unlimited" else int(soft)
    return None


def pid_listening_on(port: int) -> int | None:
    """Find the PID that owns a LISTEN socket on 127.0.0.1/any PORT (needs /proc access)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if len(parts) > 9 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(parts[9])
    if not inodes:
        return None
    targets = {f"socket:[{i}]" for i in inodes}
    candidates: list[int] = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{name}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{name}/fd/{fd}") in targets:
                        candidates.append(int(name))
                        break
    if not candidates:
        return None
    # Workers sharing a socket: prefer the topmost (the one whose parent is not a candidate).
    procs = {pid: read_proc_stat(pid) for pid in candidates}
    for pid, info in procs.items():
        if info is not None and info.ppid not in procs:
            return pid
    return candidates[0]


def raise_nofile_limit() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft, hard


# --------------------------------------------------------------------------- stats


@dataclasses.dataclass(slots=True)
class LatencyStats:
    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def from_ns(cls, samples: Sequence[int]) -> LatencyStats:
        if not samples:
            nan = math.nan
            return cls(0, nan, nan, nan, nan, nan)
        s = sorted(samples)

        def pct(q: float) -> float:
            idx = min(len(s) - 1, max(0, math.ceil(q / 100.0 * len(s)) - 1))
            return s[idx] / 1e6

        return cls(len(s), statistics.fmean(s) / 1e6, pct(50), pct(90), pct(99), s[-1] / 1e6)


@dataclasses.dataclass(slots=True)
class PhaseResult:
    scenario: str
    connections: int
    window_s: float
    requests_ok: int
    errors: dict[str, int]
    rps: float
    latency: LatencyStats
    cpu: CpuWindow | None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def median(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(vals) if vals else None


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


# --------------------------------------------------------------------------- server


def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise BenchError(f"refusing non-loopback target {url!r}: this load generator is loopback only")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _resp_command(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


async def _resp_reply(reader: asyncio.StreamReader) -> bytes:
    """One simple-string/integer/bulk reply; errors raise BenchError."""
    line = await asyncio.wait_for(reader.readline(), 5)
    kind, rest = line[:1], line[1:].rstrip(b"\r\n")
    if kind in (b"+", b":"):
        return rest
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return b""
        data = await asyncio.wait_for(reader.readexactly(size + 2), 5)
        return data[:-2]
    raise BenchError(f"unexpected redis reply {line[:200]!r}")


async def redis_commands(url: str, *commands: Sequence[str]) -> list[bytes]:
    """Run commands on the Redis db named by URL (tiny RESP client, loopback only)."""
    parts = urlsplit(url)
    check_loopback(f"http://{parts.hostname or '127.0.0.1'}/")
    db = (parts.path or "/0").lstrip("/") or "0"
    prelude: list[Sequence[str]] = []
    if parts.password:
        prelude.append(["AUTH", parts.username, parts.password] if parts.username else ["AUTH", parts.password])
    prelude.append(["SELECT", db])
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(parts.hostname or "127.0.0.1", parts.port or 6379), 5
    )
    try:
        writer.write(b"".join(_resp_command(*c) for c in (*prelude, *commands)))
        await writer.drain()
        replies = [await _resp_reply(reader) for _ in (*prelude, *commands)]
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return replies[len(prelude) :]


async def flush_redis(url: str) -> None:
    await redis_commands(url, ["FLUSHDB"])
    log(f"flushed redis {url}")


async def redis_used_memory(url: str | None) -> int | None:
    """``used_memory`` (bytes) of the whole Redis instance, or None when unknown."""
    if not url:
        return None
    try:
        (info,) = await redis_commands(url, ["INFO", "memory"])
    except (OSError, TimeoutError, BenchError, ValueError):
        return None
    for line in info.decode(errors="replace").splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":", 1)[1])
    return None


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


# --------------------------------------------------------------------------- client API


@dataclasses.dataclass(slots=True)
class Session:
    token: str
    session_id: str
    interests: list[str]


class TokenFactory:
    """Fresh, unique BLE tokens (8-64 chars of [A-Za-z0-9_-])."""

    def __init__(self, tag: str) -> None:
        self.prefix = f"{tag}{secrets.token_hex(4)}"
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"{self.prefix}-{self.n:07x}"


def random_interests(rng: random.Random, k_min: int = 2, k_max: int = 4) -> list[str]:
    return rng.sample(INTERESTS, rng.randint(k_min, min(k_max, len(INTERESTS))))


def bearer(session_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {session_id}", "Content-Type": "application/json"}


async def register(http: aiohttp.ClientSession, token: str, interests: list[str]) -> Session:
    body = orjson.dumps({"ble_token": token, "interests": interests})
    async with http.post("/session", data=body, headers=JSON_HEADERS) as resp:
        raw = await resp.read()
        if resp.status != 201:
            raise BenchError(f"POST /session {token}: HTTP {resp.status} {raw[:200]!r}")
    data = orjson.loads(raw)
    return Session(token, str(data["session_id"]), interests)


async def register_many(
    base_url: str,
    specs: Sequence[tuple[str, list[str]]],
    concurrency: int = 64,
    batch: int = 1000,
) -> list[Session]:
    """Register sessions in batches with bounded concurrency (one retry per token)."""
    out: list[Session] = []
    sem = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=HTTP_TIMEOUT) as http:

        async def one(token: str, interests: list[str]) -> Session:
            async with sem:
                for attempt in range(2):
                    try:
                        return await register(http, token, interests)
                    except (aiohttp.ClientError, TimeoutError):
                        if attempt:
                            raise
                        await asyncio.sleep(0.2)
                raise AssertionError("unreachable")

        for start in range(0, len(specs), batch):
            chunk = specs[start : start + batch]
            out += await asyncio.gather(*(one(t, i) for t, i in chunk))
    return out


class WsPeer:
    """One open WebSocket plus a reader task that timestamps every frame on arrival."""

    def __init__(self, session: Session, ws: aiohttp.ClientWebSocketResponse, use_msgpack: bool) -> None:
        self.session = session
        self.ws = ws
        self.use_msgpack = use_msgpack
        self.queue: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()
        self.closed = False
        self.frames = 0
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for msg in self.ws:  # autoping answers server pings while we iterate
                t = time.perf_counter_ns()
                self.frames += 1
                if msg.type == aiohttp.WSMsgType.TEXT:
                    data = orjson.loads(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    data = _msgpack_loads(msg.data) if self.use_msgpack else orjson.loads(msg.data)
                else:
                    continue
                if isinstance(data, dict):
                    self.queue.put_nowait((t, data))
        except (aiohttp.ClientError, TimeoutError, ValueError):
            pass
        finally:
            self.closed = True

    async def wait_nudge(self, timeout_s: float) -> tuple[int, dict[str, Any]] | None:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                t, data = await asyncio.wait_for(self.queue.get(), remaining)
            except TimeoutError:
                return None
            if data.get("type") == "nudge":
                return t, data

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)
        self.reader.cancel()
        with contextlib.suppress(BaseException):
            await self.reader


def _msgpack_loads(raw: bytes) -> Any:
    import msgpack

    return msgpack.unpackb(raw, raw=False)


async def open_ws(http: aiohttp.ClientSession, session: Session, use_msgpack: bool) -> WsPeer:
    ws = await http.ws_connect(
        f"/ws/{session.token}",
        params={"session_id": session.session_id},
        protocols=(MSGPACK_SUBPROTOCOL,) if use_msgpack else (),
        autoping=True,
        heartbeat=None,
    )
    if use_msgpack and ws.protocol != MSGPACK_SUBPROTOCOL:
        await ws.close()
        raise BenchError(f"server did not accept subprotocol {MSGPACK_SUBPROTOCOL} (got {ws.protocol!r})")
    return WsPeer(session, ws, use_msgpack)


async def open_many(
    http: aiohttp.ClientSession,
    sessions: Sequence[Session],
    concurrency: int,
    use_msgpack: bool,
) -> tuple[list[WsPeer], Counter[str]]:
    sem = asyncio.Semaphore(concurrency)
    errors: Counter[str] = Counter()

    async def one(s: Session) -> WsPeer | None:
        async with sem:
            for attempt in range(2):
                try:
                    return await open_ws(http, s, use_msgpack)
                except aiohttp.WSServerHandshakeError as exc:
                    errors[f"handshake_{exc.status}"] += 1
                    return None
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    if attempt:
                        errors[type(exc).__name__] += 1
                        return None
                    await asyncio.sleep(0.2)
            return None

    peers = await asyncio.gather(*(one(s) for s in sessions))
    return [p for p in peers if p is not None], errors


async def close_many(peers: Sequence[WsPeer], concurrency: int = 500) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(p: WsPeer) -> None:
        async with sem:
            await p.close()

    await asyncio.gather(*(one(p) for p in peers))


# --------------------------------------------------------------------------- closed-loop load


@dataclasses.dataclass(slots=True)
class LoadConfig:
    base_url: str
    server_pid: int | None
    connections: int
    duration_s: float
    warmup_s: float
    max_requests: int
    service_roots: tuple[int, ...] = ()


async def _drive(
    http: aiohttp.ClientSession,
    cfg: LoadConfig,
    request: RequestFn,
    seconds: float,
    record: bool,
) -> tuple[list[int], Counter[str]]:
    """``cfg.connections`` closed-loop workers, bounded by ``seconds`` and ``cfg.max_requests``."""
    latencies: list[int] = []
    errors: Counter[str] = Counter()
    deadline = time.perf_counter_ns() + int(seconds * 1e9)
    budget = [cfg.max_requests]

    async def worker(wid: int) -> None:
        while budget[0] > 0 and time.perf_counter_ns() < deadline:
            budget[0] -= 1
            t0 = time.perf_counter_ns()
            try:
                err = await request(http, wid)
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                err = type(exc).__name__
            if err is None:
                if record:
                    latencies.append(time.perf_counter_ns() - t0)
            else:
                errors[err] += 1
                await asyncio.sleep(0.005)  # do not spin on a failing server

    await asyncio.gather(*(worker(i) for i in range(cfg.connections)))
    return latencies, errors


async def run_load(name: str, cfg: LoadConfig, request: RequestFn, counters: Counter[str] | None = None) -> PhaseResult:
    """Warm-up, then one measured window; ``counters`` (filled by ``request``) are reported
    as their increase during the measured window."""
    connector = aiohttp.TCPConnector(limit=cfg.connections)
    async with aiohttp.ClientSession(cfg.base_url, connector=connector, timeout=HTTP_TIMEOUT) as http:
        if cfg.warmup_s > 0:
            await _drive(http, cfg, request, cfg.warmup_s, record=False)
        counted_before = Counter(counters or {})
        before = take_cpu_snapshot(cfg.server_pid, cfg.service_roots)
        latencies, errors = await _drive(http, cfg, request, cfg.duration_s, record=True)
        after = take_cpu_snapshot(cfg.server_pid, cfg.service_roots)
    cpu = cpu_window(before, after, cfg.server_pid is not None)
    ok = len(latencies)
    cpu.per_request(ok)
    result = PhaseResult(
        scenario=name,
        connections=cfg.connections,
        window_s=cpu.window_s,
        requests_ok=ok,
        errors=dict(errors),
        rps=ok / cpu.window_s,
        latency=LatencyStats.from_ns(latencies),
        cpu=cpu,
        extra=dict(Counter(counters or {}) - counted_before),
    )
    log(phase_line(result))
    return result


def livez_request() -> RequestFn:
    async def req(http: aiohttp.ClientSession, _wid: int) -> str | None:
        async with http.get("/livez") as resp:
            await resp.read()
            return None if resp.status == 200 else f"http_{resp.status}"

    return req


def session_request(rng: random.Random) -> RequestFn:
    tokens = TokenFactory("bs")

    async def req(http: aiohttp.ClientSession, _wid: int) -> str | None:
        body = orjson.dumps({"ble_token": tokens(), "interests": random_interests(rng)})
        async with http.post("/session", data=body, headers=JSON_HEADERS) as resp:
            await resp.read()
            return None if resp.status == 201 else f"http_{resp.status}"

    return req


def match_request(pool: Sequence[Session], rng: random.Random, tally: Counter[str]) -> RequestFn:
    n = len(pool)
    headers = [bearer(s.session_id) for s in pool]

    async def req(http: aiohttp.ClientSession, _wid: int) -> str | None:
        a = rng.randrange(n)
        b = rng.randrange(n - 1)
        b += b >= a
        body = orjson.dumps({"own_token": pool[a].token, "detected_token": pool[b].token})
        async with http.post("/match", data=body, headers=headers[a]) as resp:
            raw = await resp.read()
            if resp.status != 200:
                return f"http_{resp.status}"
        data = orjson.loads(raw)
        tally["responses"] += 1
        tally["match_true"] += bool(data.get("match"))
        tally["nudge_sent"] += bool(data.get("nudge_sent"))
        return None

    return req


async def create_account(http: aiohttp.ClientSession, email: str) -> dict[str, str]:
    """Registers an account with a full profile; returns its bearer headers."""
    body = orjson.dumps({"email": email, "password": BENCH_PASSWORD})
    async with http.post("/auth/register", data=body, headers=JSON_HEADERS) as resp:
        raw = await resp.read()
        if resp.status != 201:
            raise BenchError(f"POST /auth/register: HTTP {resp.status} {raw[:200]!r} (rate limits raised?)")
    headers = bearer(str(orjson.loads(raw)["access_token"]))
    async with http.put("/me/profile", data=orjson.dumps(BENCH_PROFILE), headers=headers) as resp:
        raw = await resp.read()
        if resp.status != 200:
            raise BenchError(f"PUT /me/profile: HTTP {resp.status} {raw[:200]!r}")
    return headers


async def create_accounts(base_url: str, count: int, concurrency: int = 8) -> list[dict[str, str]]:
    tag = secrets.token_hex(4)
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(base_url, timeout=HTTP_TIMEOUT) as http:

        async def one(i: int) -> dict[str, str]:
            async with gate:
                return await create_account(http, f"bench-{tag}-{i}@example.com")

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def me_request(accounts: Sequence[dict[str, str]]) -> RequestFn:
    """Client ``wid`` reads ``/me`` as account ``wid`` (modulo the accounts)."""

    async def req(http: aiohttp.ClientSession, wid: int) -> str | None:
        async with http.get("/me", headers=accounts[wid % len(accounts)]) as resp:
            await resp.read()
            return None if resp.status == 200 else f"http_{resp.status}"

    return req


# --------------------------------------------------------------------------- scenarios


@dataclasses.dataclass(slots=True)
class RunConfig:
    base_url: str
    server_pid: int | None
    connections: int | None
    duration_s: float
    warmup_s: float
    repeat: int
    pool: int
    count: int
    sockets: int
    ws_concurrency: int
    settle_s: float
    nudge_timeout_s: float
    use_msgpack: bool
    max_requests: int
    seed: int
    service_roots: tuple[int, ...] = ()

    def load(self, default_connections: int) -> LoadConfig:
        return LoadConfig(
            base_url=self.base_url,
            server_pid=self.server_pid,
            service_roots=self.service_roots,
            connections=self.connections or default_connections,
            duration_s=self.duration_s,
            warmup_s=self.warmup_s,
            max_requests=self.max_requests,
        )


async def scenario_livez(cfg: RunConfig) -> dict[str, Any]:
    phases = [await run_load("livez", cfg.load(32), livez_request()) for _ in range(cfg.repeat)]
    return {"phases": phases, "summary": summarize_phases(phases)}


async def scenario_session(cfg: RunConfig) -> dict[str, Any]:
    rng = random.Random(cfg.seed)
    phases = [await run_load("session", cfg.load(32), session_request(rng)) for _ in range(cfg.repeat)]
    return {"phases": phases, "summary": summarize_phases(phases)}


def summarize_phases(phases: Sequence[PhaseResult]) -> dict[str, Any]:
    return {
        "rps_median": median([p.rps for p in phases]),
        "p50_ms_median": median([p.latency.p50_ms for p in phases]),
        "p99_ms_median": median([p.latency.p99_ms for p in phases]),
        "server_us_per_req_median": median([p.cpu.server_us_per_req if p.cpu else None for p in phases]),
        "services_us_per_req_median": median([p.cpu.services_us_per_req if p.cpu else None for p in phases]),
        "machine_busy_cores_max": max((p.cpu.machine_busy_cores for p in phases if p.cpu), default=None),
        "other_busy_cores_max": max((p.cpu.other_busy_cores for p in phases if p.cpu), default=None),
        "errors": sum(sum(p.errors.values()) for p in phases),
    }


async def create_pool(cfg: RunConfig, size: int, tag: str, rng: random.Random) -> list[Session]:
    tokens = TokenFactory(tag)
    specs = [(tokens(), random_interests(rng)) for _ in range(size)]
    t0 = time.perf_counter()
    pool = await register_many(cfg.base_url, specs, concurrency=64)
    log(f"registered {len(pool)} sessions in {time.perf_counter() - t0:.1f}s")
    return pool


async def scenario_match(cfg: RunConfig) -> dict[str, Any]:
    """livez and match windows alternate on the same server; medians and ratios."""
    rng = random.Random(cfg.seed)
    pool = await create_pool(cfg, cfg.pool, "bm", rng)
    livez: list[PhaseResult] = []
    match: list[PhaseResult] = []
    for r in range(cfg.repeat):
        log(f"match scenario round {r + 1}/{cfg.repeat}")
        livez.append(await run_load("livez", cfg.load(32), livez_request()))
        tally: Counter[str] = Counter()
        window = await run_load("match", cfg.load(32), match_request(pool, rng, tally), tally)
        match.append(window)
        if window.errors.get("http_401", 0) > window.requests_ok:
            log(
                "WARNING: most /match answers were 401, i.e. the pool's sessions are gone: was the "
                "server's Redis db flushed by someone else? Use a --redis-url db nobody else uses."
            )
    summary = {"pool_sessions": len(pool), **versus_livez("match", livez, match)}
    return {"livez_phases": livez, "match_phases": match, "summary": summary}


def versus_livez(name: str, livez: Sequence[PhaseResult], other: Sequence[PhaseResult]) -> dict[str, Any]:
    """Medians of alternating livez/``name`` windows and their ratios (``name`` over livez)."""
    lz, ot = summarize_phases(livez), summarize_phases(other)
    per_round_tp = [ratio(o.rps, lv.rps) for lv, o in zip(livez, other, strict=True)]
    per_round_cpu = [
        ratio(
            o.cpu.server_us_per_req if o.cpu else None,
            lv.cpu.server_us_per_req if lv.cpu else None,
        )
        for lv, o in zip(livez, other, strict=True)
    ]
    return {
        "livez": lz,
        name: ot,
        f"throughput_ratio_{name}_over_livez": ratio(ot["rps_median"], lz["rps_median"]),
        "throughput_ratio_per_round": per_round_tp,
        f"cpu_per_req_ratio_{name}_over_livez": ratio(ot["server_us_per_req_median"], lz["server_us_per_req_median"]),
        "cpu_per_req_ratio_per_round": per_round_cpu,
        "cpu_per_req_ratio_incl_services": ratio(
            _sum_opt(ot["server_us_per_req_median"], ot["services_us_per_req_median"]),
            _sum_opt(lz["server_us_per_req_median"], lz["services_us_per_req_median"]),
        ),
    }


async def scenario_me(cfg: RunConfig) -> dict[str, Any]:
    """livez and ``GET /me`` windows alternate on the same server; medians and ratios."""
    load = cfg.load(32)
    t0 = time.perf_counter()
    accounts = await create_accounts(cfg.base_url, load.connections)
    log(f"registered {len(accounts)} accounts with profiles in {time.perf_counter() - t0:.1f}s")
    livez: list[PhaseResult] = []
    me: list[PhaseResult] = []
    for r in range(cfg.repeat):
        log(f"me scenario round {r + 1}/{cfg.repeat}")
        livez.append(await run_load("livez", load, livez_request()))
        window = await run_load("me", load, me_request(accounts))
        me.append(window)
        if window.errors.get("http_429", 0):
            log("WARNING: /me answered 429: run the server with RATE_LIMIT_API_PER_MINUTE raised")
    summary = {"accounts": len(accounts), **versus_livez("me", livez, me)}
    return {"livez_phases": livez, "me_phases": me, "summary": summary}


def _sum_opt(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


@dataclasses.dataclass(slots=True)
class Pair:
    a: WsPeer
    b: WsPeer


async def _prepare_pairs(
    cfg: RunConfig,
    ws_http: aiohttp.ClientSession,
    n: int,
    tokens: TokenFactory,
    rng: random.Random,
) -> tuple[list[Pair], Counter[str]]:
    specs: list[tuple[str, list[str]]] = []
    for _ in range(n):
        for _side in range(2):
            extra = rng.sample([i for i in INTERESTS if i not in SHARED_INTERESTS], 1)
            specs.append((tokens(), [*SHARED_INTERESTS, *extra]))
    sessions = await register_many(cfg.base_url, specs, concurrency=64)
    peers, errors = await open_many(ws_http, sessions, 64, cfg.use_msgpack)
    by_token = {p.session.token: p for p in peers}
    pairs: list[Pair] = []
    leftovers: list[WsPeer] = []
    for i in range(0, len(sessions), 2):
        pa, pb = by_token.get(sessions[i].token), by_token.get(sessions[i + 1].token)
        if pa is not None and pb is not None:
            pairs.append(Pair(pa, pb))
        else:
            leftovers += [p for p in (pa, pb) if p is not None]
    await close_many(leftovers)
    return pairs, errors


async def _nudge_once(
    http: aiohttp.ClientSession,
    pair: Pair,
    timeout_s: float,
    samples: dict[str, list[int]],
    errors: Counter[str],
) -> None:
    a, b = pair.a.session, pair.b.session
    body = orjson.dumps({"own_token": a.token, "detected_token": b.token})
    headers = bearer(a.session_id)
    t0 = time.perf_counter_ns()
    try:
        async with http.post("/match", data=body, headers=headers) as resp:
            raw = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        errors[type(exc).__name__] += 1
        return
    t_resp = time.perf_counter_ns()
    if status != 200:
        errors[f"match_http_{status}"] += 1
        return
    data = orjson.loads(raw)
    if not data.get("nudge_sent"):
        errors["nudge_sent_false"] += 1
        return
    got_b = await pair.b.wait_nudge(timeout_s)
    if got_b is None:
        errors["nudge_timeout_b"] += 1
        return
    t_b, frame = got_b
    samples["nudge_ns"].append(t_b - t0)
    samples["match_http_ns"].append(t_resp - t0)
    if not frame.get("shared_interests"):  # categories, e.g. ["music", "tech"]
        errors["frame_without_shared_interests"] += 1
    got_a = await pair.a.wait_nudge(min(timeout_s, 2.0))
    if got_a is None:
        errors["nudge_timeout_a"] += 1
    else:
        samples["nudge_a_ns"].append(got_a[0] - t0)


async def _nudge_client(
    http: aiohttp.ClientSession,
    pairs: Iterator[Pair],
    stop_at_ns: int,
    timeout_s: float,
    samples: dict[str, list[int]],
    errors: Counter[str],
) -> int:
    """One of C concurrent clients; the iterator is shared so each pair is used exactly once.
    Returns the number of pairs it used."""
    used = 0
    for pair in pairs:
        if time.perf_counter_ns() >= stop_at_ns:
            break
        used += 1
        await _nudge_once(http, pair, timeout_s, samples, errors)
    return used


async def scenario_nudge(cfg: RunConfig, concurrency: int | None = None) -> dict[str, Any]:
    """Push latency over fresh pairs; sockets are opened before each timed batch."""
    c = concurrency or cfg.connections or 8
    rng = random.Random(cfg.seed + c)
    tokens = TokenFactory(f"bn{c}")
    batch_size = max(c * 8, 64)
    samples: dict[str, list[int]] = {
        "nudge_ns": [],
        "match_http_ns": [],
        "nudge_a_ns": [],
    }
    errors: Counter[str] = Counter()
    setup_errors: Counter[str] = Counter()
    timed_ns = 0
    attempted = 0
    wall_deadline = time.monotonic() + max(120.0, cfg.duration_s * 20)
    ws_conn = aiohttp.TCPConnector(limit=0)
    api_conn = aiohttp.TCPConnector(limit=c)
    async with (
        aiohttp.ClientSession(cfg.base_url, connector=ws_conn, timeout=HTTP_TIMEOUT) as ws_http,
        aiohttp.ClientSession(cfg.base_url, connector=api_conn, timeout=HTTP_TIMEOUT) as api_http,
    ):
        warmup_left = min(max(c * 2, 16), cfg.count) if cfg.warmup_s > 0 else 0
        rounds = 0
        while attempted < cfg.count and timed_ns < cfg.duration_s * 1e9 and time.monotonic() < wall_deadline:
            rounds += 1
            warm = warmup_left > 0
            n = warmup_left if warm else min(batch_size, cfg.count - attempted)
            pairs, errs = await _prepare_pairs(cfg, ws_http, n, tokens, rng)
            setup_errors.update(errs)
            if not pairs:
                raise BenchError(f"could not prepare any nudge pair: {dict(setup_errors)}")
            it: Iterator[Pair] = iter(pairs)
            sink: dict[str, list[int]] = {k: [] for k in samples}
            sink_errors: Counter[str] = Counter()
            stop_at = time.perf_counter_ns() + int(cfg.duration_s * 1e9) - timed_ns
            t0 = time.perf_counter_ns()
            used = await asyncio.gather(
                *(_nudge_client(api_http, it, stop_at, cfg.nudge_timeout_s, sink, sink_errors) for _ in range(c))
            )
            elapsed = time.perf_counter_ns() - t0
            await close_many([p for pair in pairs for p in (pair.a, pair.b)])
            if warm:
                warmup_left = 0
                log(f"nudge C={c}: warm-up batch of {len(pairs)} pairs done ({dict(sink_errors) or 'no errors'})")
                continue
            timed_ns += elapsed
            attempted += sum(used)
            for k, v in sink.items():
                samples[k] += v
            errors.update(sink_errors)
    nudge = LatencyStats.from_ns(samples["nudge_ns"])
    result = {
        "concurrency": c,
        "msgpack": cfg.use_msgpack,
        "pairs_attempted": attempted,
        "batches": rounds,
        "timed_s": timed_ns / 1e9,
        "nudges_per_s": nudge.count / (timed_ns / 1e9) if timed_ns else None,
        "latency_b": nudge,
        "latency_a": LatencyStats.from_ns(samples["nudge_a_ns"]),
        "match_http": LatencyStats.from_ns(samples["match_http_ns"]),
        "errors": dict(errors),
        "setup_errors": dict(setup_errors),
    }
    log(
        f"nudge C={c}: n={nudge.count} p50={nudge.p50_ms:.2f}ms p90={nudge.p90_ms:.2f}ms "
        f"p99={nudge.p99_ms:.2f}ms max={nudge.max_ms:.2f}ms errors={dict(errors)}"
    )
    return result


async def scenario_idle_ws(cfg: RunConfig, server: SpawnedServer | None) -> dict[str, Any]:
    """RSS growth per idle authenticated WebSocket on a fresh server."""
    if server is None:
        raise BenchError("idle_ws needs a fresh server: run it with --spawn")
    pid, n = server.pid, cfg.sockets
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    server_nofile = max_open_files(pid)
    log(f"idle_ws: client RLIMIT_NOFILE={soft}/{hard}, server max open files={server_nofile}")
    if soft != resource.RLIM_INFINITY and soft < n + 500:
        raise BenchError(f"client RLIMIT_NOFILE {soft} too low for {n} sockets")
    if server_nofile is not None and 0 <= server_nofile < n + 100:
        log(f"WARNING: server fd limit {server_nofile} < {n} sockets; expect failures")
    rng = random.Random(cfg.seed)
    rss_start = rss_kb(pid)

    # Warm-up: exercise /livez, /session, /ws and /match code paths once.
    warm_tokens = TokenFactory("bw")
    warm = await register_many(cfg.base_url, [(warm_tokens(), list(SHARED_INTERESTS)) for _ in range(64)])
    async with aiohttp.ClientSession(
        cfg.base_url, connector=aiohttp.TCPConnector(limit=0), timeout=HTTP_TIMEOUT
    ) as http:
        for _ in range(200):
            async with http.get("/livez") as resp:
                await resp.read()
        peers, _ = await open_many(http, warm, 32, cfg.use_msgpack)
        for i in range(0, len(peers) - 1, 2):
            body = orjson.dumps(
                {
                    "own_token": peers[i].session.token,
                    "detected_token": peers[i + 1].session.token,
                }
            )
            async with http.post("/match", data=body, headers=bearer(peers[i].session.session_id)) as resp:
                await resp.read()
        await asyncio.sleep(0.5)
        await close_many(peers)
    await asyncio.sleep(1.0)
    rss_warm = rss_kb(pid)

    tokens = TokenFactory("bi")
    t0 = time.perf_counter()
    sessions = await register_many(
        cfg.base_url,
        [(tokens(), ["devops", "hiking"]) for _ in range(n)],
        concurrency=64,
        batch=1000,
    )
    register_s = time.perf_counter() - t0
    await asyncio.sleep(1.0)
    rss_sessions = rss_kb(pid)
    redis_url = server.opts.redis_url
    redis_before = await redis_used_memory(redis_url)
    log(f"idle_ws: {n} sessions registered in {register_s:.1f}s; RSS {rss_warm} -> {rss_sessions} KB")

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(cfg.base_url, connector=connector, timeout=HTTP_TIMEOUT) as http:
        t0 = time.perf_counter()
        peers, ws_errors = await open_many(http, sessions, cfg.ws_concurrency, cfg.use_msgpack)
        open_s = time.perf_counter() - t0
        log(f"idle_ws: opened {len(peers)}/{n} sockets in {open_s:.1f}s (errors: {dict(ws_errors) or 'none'})")
        await asyncio.sleep(cfg.settle_s)
        rss_after = rss_kb(pid)
        redis_after = await redis_used_memory(redis_url)
        alive = [p for p in peers if not p.closed]
        log(f"idle_ws: after {cfg.settle_s}s {len(alive)} sockets alive; RSS {rss_after} KB")

        # Prove a sample is alive: a fresh partner detects each sampled idle token.
        sample = rng.sample(alive, min(20, len(alive)))
        partners = await register_many(
            cfg.base_url,
            [(tokens(), ["devops", "running"]) for _ in sample],
            concurrency=20,
        )
        delivered = 0
        verify_errors: Counter[str] = Counter()

        async def verify(peer: WsPeer, partner: Session) -> None:
            nonlocal delivered
            body = orjson.dumps({"own_token": partner.token, "detected_token": peer.session.token})
            async with http.post("/match", data=body, headers=bearer(partner.session_id)) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    verify_errors[f"match_http_{resp.status}"] += 1
                    return
            if not orjson.loads(raw).get("nudge_sent"):
                verify_errors["nudge_sent_false"] += 1
            if await peer.wait_nudge(cfg.nudge_timeout_s) is not None:
                delivered += 1
            else:
                verify_errors["nudge_timeout"] += 1

        await asyncio.gather(*(verify(p, q) for p, q in zip(sample, partners, strict=True)))
        alive_end = sum(not p.closed for p in peers)
        log(f"idle_ws: nudge delivered to {delivered}/{len(sample)} sampled sockets; {alive_end} alive")
        t0 = time.perf_counter()
        await close_many(peers)
        close_s = time.perf_counter() - t0
    opened = len(peers)
    return {
        "sockets_requested": n,
        "sockets_opened": opened,
        "sockets_alive_after_settle": len(alive),
        "sockets_alive_at_end": alive_end,
        "ws_open_errors": dict(ws_errors),
        "register_s": register_s,
        "open_s": open_s,
        "close_s": close_s,
        "settle_s": cfg.settle_s,
        "rss_start_kb": rss_start,
        "rss_after_warmup_kb": rss_warm,
        "rss_after_sessions_kb": rss_sessions,
        "rss_after_sockets_kb": rss_after,
        "kb_per_socket": (rss_after - rss_sessions) / opened if opened else None,
        "kb_per_socket_incl_session": (rss_after - rss_warm) / opened if opened else None,
        "redis_used_memory_before_sockets": redis_before,
        "redis_used_memory_after_sockets": redis_after,
        "redis_bytes_per_socket": (
            (redis_after - redis_before) / opened
            if opened and redis_before is not None and redis_after is not None
            else None
        ),
        "nudge_sample": len(sample),
        "nudge_sample_delivered": delivered,
        "nudge_verify_errors": dict(verify_errors),
        "client_nofile": [soft, hard],
        "server_max_open_files": server_nofile,
        "msgpack": cfg.use_msgpack,
    }


# --------------------------------------------------------------------------- reporting


def _f(v: float | None, fmt: str = ".1f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, fmt)


def md_row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def md_table(header: Sequence[str], align: str, rows: Sequence[str]) -> list[str]:
    """``align``: one char per column, ``l`` or ``r``."""
    sep = md_row(*("---" if a == "l" else "---:" for a in align))
    return [md_row(*header), sep, *rows, ""]


def phase_line(p: PhaseResult) -> str:
    parts = [
        f"{p.scenario:<8} c={p.connections:<3} {p.rps:>9.0f} req/s",
        f"p50={p.latency.p50_ms:.2f}ms p99={p.latency.p99_ms:.2f}ms",
    ]
    if p.cpu:
        c = p.cpu
        parts.append(f"srv={_f(c.server_us_per_req)}us/req svc={_f(c.services_us_per_req)}us/req")
        parts.append(f"machine={c.machine_busy_cores:.2f}/{c.machine_cores} other={c.other_busy_cores:.2f}")
    if p.errors:
        parts.append(f"errors={p.errors}")
    if p.extra:
        parts.append(f"{p.extra}")
    return "  ".join(parts)


PHASE_COLUMNS = (
    "scenario",
    "conns",
    "req/s",
    "p50 ms",
    "p99 ms",
    "server CPU µs/req",
    "redis+pg CPU µs/req",
    "client CPU µs/req",
    "machine busy cores",
    "other cores",
    "errors",
)


def phase_row(p: PhaseResult) -> str:
    c = p.cpu
    return md_row(
        p.scenario,
        p.connections,
        f"{p.rps:.0f}",
        _f(p.latency.p50_ms, ".2f"),
        _f(p.latency.p99_ms, ".2f"),
        _f(c.server_us_per_req if c else None),
        _f(c.services_us_per_req if c else None),
        _f(c.client_us_per_req if c else None),
        f"{_f(c.machine_busy_cores if c else None, '.2f')}/{NCPU}",
        _f(c.other_busy_cores if c else None, ".2f"),
        sum(p.errors.values()),
    )


def _render_versus(name: str, s: dict[str, Any]) -> list[str]:
    lz, mt = s["livez"], s[name]
    rows = [
        md_row(
            "throughput req/s",
            _f(lz["rps_median"], ".0f"),
            _f(mt["rps_median"], ".0f"),
            _f(s[f"throughput_ratio_{name}_over_livez"], ".3f"),
        ),
        md_row("p50 ms", _f(lz["p50_ms_median"], ".2f"), _f(mt["p50_ms_median"], ".2f"), ""),
        md_row("p99 ms", _f(lz["p99_ms_median"], ".2f"), _f(mt["p99_ms_median"], ".2f"), ""),
        md_row(
            "server CPU µs/req",
            _f(lz["server_us_per_req_median"]),
            _f(mt["server_us_per_req_median"]),
            _f(s[f"cpu_per_req_ratio_{name}_over_livez"], ".2f"),
        ),
        md_row(
            "redis+postgres CPU µs/req",
            _f(lz["services_us_per_req_median"]),
            _f(mt["services_us_per_req_median"]),
            "",
        ),
        md_row(
            "server + redis/pg CPU µs/req",
            _f(_sum_opt(lz["server_us_per_req_median"], lz["services_us_per_req_median"])),
            _f(_sum_opt(mt["server_us_per_req_median"], mt["services_us_per_req_median"])),
            _f(s["cpu_per_req_ratio_incl_services"], ".2f"),
        ),
    ]
    tp = ", ".join(_f(r, ".3f") for r in s["throughput_ratio_per_round"])
    cpu = ", ".join(_f(r, ".2f") for r in s["cpu_per_req_ratio_per_round"])
    return [
        f"### {name} vs livez (same server, alternating windows, medians)",
        "",
        *md_table(("metric", "livez", name, f"{name}/livez"), "lrrr", rows),
        f"Per-round throughput ratios: {tp}; per-round server CPU/req ratios: {cpu}.",
        "",
    ]


def _render_nudges(nudges: Sequence[dict[str, Any]]) -> list[str]:
    rows = []
    for r in nudges:
        lb: LatencyStats = r["latency_b"]
        rows.append(
            md_row(
                r["concurrency"],
                lb.count,
                _f(lb.p50_ms, ".2f"),
                _f(lb.p90_ms, ".2f"),
                _f(lb.p99_ms, ".2f"),
                _f(lb.max_ms, ".2f"),
                _f(r["latency_a"].p50_ms, ".2f"),
                _f(r["match_http"].p50_ms, ".2f"),
                _f(r["nudges_per_s"], ".0f"),
                r["errors"] or "-",
            )
        )
    header = (
        "clients",
        "nudges",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "A-side p50 ms",
        "POST /match p50 ms",
        "nudges/s",
        "errors",
    )
    return [
        "### nudge push latency (POST /match sent -> frame read on B's socket)",
        "",
        *md_table(header, "rrrrrrrrrl", rows),
    ]


def _render_idle(r: dict[str, Any]) -> list[str]:
    header = (
        "sockets opened/alive",
        "RSS before sockets KB",
        "RSS after KB",
        "KB per socket",
        "KB per socket incl. session",
        "Redis bytes per socket",
        "nudge sample delivered",
        "open time s",
    )
    row = md_row(
        f"{r['sockets_opened']}/{r['sockets_alive_at_end']}",
        r["rss_after_sessions_kb"],
        r["rss_after_sockets_kb"],
        _f(r["kb_per_socket"], ".2f"),
        _f(r["kb_per_socket_incl_session"], ".2f"),
        _f(r["redis_bytes_per_socket"], ".0f"),
        f"{r['nudge_sample_delivered']}/{r['nudge_sample']}",
        f"{r['open_s']:.1f}",
    )
    return [
        "### idle WebSockets (fresh server)",
        "",
        *md_table(header, "r" * len(header), [row]),
    ]


def render(results: dict[str, Any]) -> str:
    out: list[str] = []
    phases: list[PhaseResult] = []
    for key in ("livez", "session"):
        if key in results:
            phases += results[key]["phases"]
    for name in VERSUS_SCENARIOS:
        if name in results:
            m = results[name]
            for lv, mt in zip(m["livez_phases"], m[f"{name}_phases"], strict=True):
                phases += [lv, mt]
    if phases:
        rows = [phase_row(p) for p in phases]
        out += [
            "### Closed-loop HTTP windows",
            "",
            *md_table(PHASE_COLUMNS, "lr" + "r" * 9, rows),
        ]
    for name in VERSUS_SCENARIOS:
        if name in results:
            out += _render_versus(name, results[name]["summary"])
    nudges = [v for k, v in results.items() if k.startswith("nudge")]
    if nudges:
        out += _render_nudges(nudges)
    if "idle_ws" in results:
        out += _render_idle(results["idle_ws"])
    return "\n".join(out)


def machine_meta() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": NCPU,
        "cpu_model": model,
        "loadavg_at_start": os.getloadavg(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "clk_tck": CLK_TCK,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _json_default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, Counter):
        return dict(obj)
    raise TypeError(type(obj).__name__)


# --------------------------------------------------------------------------- CLI

SCENARIOS = ("livez", "session", "match", "me", "nudge", "idle_ws", "all")
#: Scenarios whose windows alternate with livez windows on the same server.
VERSUS_SCENARIOS = ("match", "me")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.loadgen",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("scenario", choices=SCENARIOS)
    p.add_argument(
        "--connections",
        "-c",
        type=int,
        default=None,
        help="concurrent clients (default: 32 for HTTP scenarios, 8 for nudge)",
    )
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measured window")
    p.add_argument(
        "--warmup",
        type=float,
        default=3.0,
        help="unmeasured seconds before each window",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="windows per scenario (match: livez/match rounds)",
    )
    p.add_argument(
        "--url",
        default=None,
        help="server base URL (loopback only; default http://127.0.0.1:8080)",
    )
    p.add_argument(
        "--spawn",
        action="store_true",
        help="start `python run.py` on a free port ourselves",
    )
    p.add_argument(
        "--pid",
        type=int,
        default=None,
        help="server PID for CPU accounting (auto-detected if omitted)",
    )
    p.add_argument(
        "--pool",
        type=int,
        default=2000,
        help="sessions registered for the match scenario",
    )
    p.add_argument("--count", type=int, default=1000, help="max nudge pairs per concurrency level")
    p.add_argument("--sockets", type=int, default=10_000, help="idle WebSockets for idle_ws")
    p.add_argument(
        "--ws-concurrency",
        type=int,
        default=200,
        help="concurrent WS handshakes in idle_ws",
    )
    p.add_argument("--settle", type=float, default=5.0, help="seconds idle before reading RSS")
    p.add_argument(
        "--nudge-timeout",
        type=float,
        default=5.0,
        help="seconds to wait for a nudge frame",
    )
    p.add_argument(
        "--msgpack",
        action="store_true",
        help=f"use the {MSGPACK_SUBPROTOCOL} WS subprotocol",
    )
    p.add_argument(
        "--max-requests",
        type=int,
        default=5_000_000,
        help="hard cap of requests per window",
    )
    p.add_argument(
        "--max-wall",
        type=float,
        default=3600.0,
        help="hard cap of the whole run, seconds",
    )
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--json", type=Path, default=None, help="write all results to this JSON file")
    p.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="write the summary tables to this file",
    )
    srv = p.add_argument_group("spawned server")
    srv.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
    )
    srv.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL),
        help="FLUSHDB'd before each spawn; keep it on its own db number",
    )
    srv.add_argument(
        "--embedded",
        action="store_true",
        help="no DATABASE_URL/REDIS_URL: embedded services",
    )
    srv.add_argument("--ready-timeout", type=float, default=120.0, help="seconds to wait for /livez")
    srv.add_argument(
        "--redis-cluster",
        action="store_true",
        help="serve from a three-primary Redis Cluster of local redis-server 7 processes (REDIS_CLUSTER_URL)",
    )
    srv.add_argument("--log-dir", type=Path, default=Path(tempfile.gettempdir()) / "proximity-bench")
    srv.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the spawned server (repeatable)",
    )
    srv.add_argument(
        "--server-script",
        default="run.py",
        help="entry point run as `python SCRIPT --host 127.0.0.1 --port PORT` from the repo root",
    )
    return p


def _validate(args: argparse.Namespace) -> None:
    for name in ("duration", "warmup", "settle", "nudge_timeout"):
        if getattr(args, name) < 0:
            raise BenchError(f"--{name.replace('_', '-')} must be >= 0")
    for name in (
        "repeat",
        "pool",
        "count",
        "sockets",
        "ws_concurrency",
        "max_requests",
    ):
        if getattr(args, name) < 1:
            raise BenchError(f"--{name.replace('_', '-')} must be >= 1")
    if args.connections is not None and args.connections < 1:
        raise BenchError("--connections must be >= 1")
    if args.pool < 2:
        raise BenchError("--pool must be >= 2")
    if args.scenario in ("idle_ws", "all") and args.url and not args.spawn:
        raise BenchError(f"{args.scenario} needs fresh servers: use --spawn instead of --url")


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    if not args.redis_cluster:
        return await _run_on(args, None)
    from tests.redis_cluster import find_redis_server, running_cluster

    if find_redis_server() is None:
        raise BenchError("--redis-cluster needs redis-server 7 or newer (set REDIS_SERVER)")
    with running_cluster(Path(tempfile.mkdtemp(prefix="px-bench-cluster-"))) as cluster:
        log(f"Redis Cluster of {cluster.primaries} primaries on ports {cluster.ports}")
        return await _run_on(args, cluster.url)


def _cluster_node_urls(seed_url: str) -> list[str]:
    """Every primary of the cluster (their CPU counts as the service's)."""
    import redis

    client = redis.RedisCluster.from_url(seed_url)
    try:
        return [f"redis://{node.host}:{node.port}" for node in client.get_primaries()]  # type: ignore[no-untyped-call]
    finally:
        client.close()


async def _run_on(args: argparse.Namespace, redis_cluster_url: str | None) -> dict[str, Any]:
    nofile = raise_nofile_limit()
    log(f"client RLIMIT_NOFILE raised to {nofile[0]} (hard {nofile[1]})")
    opts = ServerOptions(
        database_url=None if args.embedded else args.database_url,
        redis_url=None if args.embedded else args.redis_url,
        embedded=args.embedded,
        log_dir=args.log_dir,
        ready_timeout_s=max(args.ready_timeout, 300.0) if args.embedded else args.ready_timeout,
        extra_env=dict(kv.split("=", 1) for kv in args.server_env),
        script=args.server_script,
        redis_cluster_url=redis_cluster_url,
    )
    spawn = args.spawn or args.scenario == "all"
    results: dict[str, Any] = {}
    # External Redis/PostgreSQL: the processes listening on their ports (and children).
    redis_urls = [redis_cluster_url, *_cluster_node_urls(redis_cluster_url)] if redis_cluster_url else [args.redis_url]
    service_roots = () if args.embedded else service_roots_for([args.database_url, *redis_urls])
    log(f"service processes (redis/postgres roots): {list(service_roots) or 'by name'}")

    def config(url: str, pid: int | None) -> RunConfig:
        return RunConfig(
            base_url=url,
            server_pid=pid,
            connections=args.connections,
            duration_s=args.duration,
            warmup_s=args.warmup,
            repeat=args.repeat,
            pool=args.pool,
            count=args.count,
            sockets=args.sockets,
            ws_concurrency=args.ws_concurrency,
            settle_s=args.settle,
            nudge_timeout_s=args.nudge_timeout,
            use_msgpack=args.msgpack,
            max_requests=args.max_requests,
            seed=args.seed,
            service_roots=service_roots,
        )

    async def on_server(
        fn: Callable[[RunConfig, SpawnedServer | None], Awaitable[None]],
    ) -> None:
        if spawn:
            server = SpawnedServer(opts)
            try:
                await server.start()
                results.setdefault("servers", []).append(
                    {"url": server.url, "pid": server.pid, "log": str(server.log_path)}
                )
                await fn(config(server.url, server.pid), server)
            finally:
                await server.stop()
        else:
            url = (args.url or "http://127.0.0.1:8080").rstrip("/")
            check_loopback(url)
            pid = args.pid or pid_listening_on(urlsplit(url).port or 80)
            if pid is None:
                log("WARNING: server PID unknown (give --pid): no server CPU figures")
            else:
                log(f"server PID {pid} ({'given' if args.pid else 'found via its listening socket'})")
            results.setdefault("servers", []).append({"url": url, "pid": pid})
            await fn(config(url, pid), None)

    async def main_server(cfg: RunConfig, _server: SpawnedServer | None) -> None:
        sc = args.scenario
        if sc == "livez":
            results["livez"] = await scenario_livez(cfg)
        elif sc == "session":
            results["session"] = await scenario_session(cfg)
        elif sc == "match":
            results["match"] = await scenario_match(cfg)
        elif sc == "me":
            results["me"] = await scenario_me(cfg)
        elif sc == "nudge":
            results[f"nudge_c{cfg.connections or 8}"] = await scenario_nudge(cfg)
        elif sc == "all":
            results["match"] = await scenario_match(cfg)
            one = dataclasses.replace(cfg, repeat=1)
            results["session"] = await scenario_session(one)
            for c in (8, 32):
                results[f"nudge_c{c}"] = await scenario_nudge(cfg, c)

    async def idle_server(cfg: RunConfig, server: SpawnedServer | None) -> None:
        results["idle_ws"] = await scenario_idle_ws(cfg, server)

    if args.scenario != "idle_ws":
        await on_server(main_server)
    if args.scenario in ("idle_ws", "all"):
        await on_server(idle_server)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _validate(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    meta: dict[str, Any] = {
        "machine": machine_meta(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
        meta["client_loop"] = "uvloop"
    except ImportError:
        runner = asyncio.Runner()
        meta["client_loop"] = "asyncio"
    try:
        with runner:
            results = runner.run(asyncio.wait_for(_run(args), args.max_wall))
    except (BenchError, TimeoutError) as exc:
        print(f"error: {exc or 'run exceeded --max-wall'}", file=sys.stderr)
        return 1
    meta["loadavg_at_end"] = os.getloadavg()
    report = render(results)
    print(report)
    if args.markdown:
        args.markdown.write_text(report + "\n")
    if args.json:
        args.json.write_bytes(
            orjson.dumps(
                {"meta": meta, "results": results},
                default=_json_default,
                option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS,
            )
        )
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
