"""Measuring: server/service/machine CPU from ``/proc``, RSS and open-file limits,
latency percentiles (nearest rank), and the closed-loop load window (``run_load``)
that records throughput, latency and CPU per request."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import resource
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bench.loadgen.client import HTTP_TIMEOUT
from bench.loadgen.common import CLK_TCK, NCPU, fmt, log

SERVICE_COMMS = frozenset({"redis-server", "postgres", "postmaster"})

RequestFn = Callable[[aiohttp.ClientSession, int], Awaitable["str | None"]]


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


def phase_line(p: PhaseResult) -> str:
    parts = [
        f"{p.scenario:<8} c={p.connections:<3} {p.rps:>9.0f} req/s",
        f"p50={p.latency.p50_ms:.2f}ms p99={p.latency.p99_ms:.2f}ms",
    ]
    if p.cpu:
        c = p.cpu
        parts.append(f"srv={fmt(c.server_us_per_req)}us/req svc={fmt(c.services_us_per_req)}us/req")
        parts.append(f"machine={c.machine_busy_cores:.2f}/{c.machine_cores} other={c.other_busy_cores:.2f}")
    if p.errors:
        parts.append(f"errors={p.errors}")
    if p.extra:
        parts.append(f"{p.extra}")
    return "  ".join(parts)
