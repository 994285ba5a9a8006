"""Scale figures: nudges delivered with ``run.py --workers 1`` vs ``2``, and RSS per idle socket.

Usage (from the repository root, PostgreSQL and Redis running)::

    python -m bench.scale workers [--rounds 5] [--sockets 10000] [--connections 48] [--duration 10]
    python -m bench.scale idle    [--steps 1000,2000,5000,10000,15000,19000,max] [--hold 35]

Both write a markdown report on stdout (progress on stderr) and, with
``--json FILE``, every figure per round/step.

``workers``: rounds of ``run.py --workers 1`` and ``--workers 2`` (a fresh
server each round, its own Redis key prefix), interleaved in pairs ABBA-style
(1,2 / 2,1 / 1,2 …) so drift on the machine hits both sides alike. Each round,
``--generators`` load-generator processes (``bench/scale_gen.py``: raw
asyncio protocols on uvloop, each from its own loopback source address)
register ``--sockets`` sessions that share an interest, hold one WebSocket
each (the kernel spreads them over the workers with SO_REUSEPORT), then drive
``POST /match`` over fresh pairs on ``--connections`` keep-alive connections.
After ``--warmup`` s, one ``--duration`` s window is measured: nudge frames
received (two per match that reported ``nudge_sent``), CPU seconds of the
server processes (supervisor + workers), of the generators, of Redis and of
everything else on the machine (``/proc/<pid>/stat``, ``/proc/stat``). Then
the load stops and every socket must have received exactly the nudges its
matches announced (missing/extra per socket, malformed frames, closed
sockets); a round with a loss or an error is marked failed.

Reported per worker count: medians and min–max over rounds of events/s and
server CPU µs per event, and the 2w/1w ratios computed within each pair of
adjacent rounds (median and range). CPU per event does not depend on how much
CPU the generator or the machine left the server; events/s does, on 2 cores.

``idle``: one server process (``run.py`` without ``--workers``); sessions are
registered up front, then sockets are opened in steps and held; at each step,
after ``--settle`` s: the server's VmRSS, KB per socket (average since the
baseline, and marginal since the previous step), kernel memory (slab, TCP
buffers: both ends of each loopback connection, machine-wide, informative),
sockets alive on both sides, and a probe: ``--probe`` random pairs matched,
each nudge must arrive. ``max`` is as many sockets as the server's open-file
limit leaves room for. At the last step the sockets are held ``--hold`` s
(longer than the 30 s heartbeat, so every socket has been pinged and must
have answered), then measured again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import math
import os
import secrets
import signal
import statistics
import sys
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from bench.loadgen.common import CLK_TCK, DEFAULT_DATABASE_URL, NCPU, REPO_ROOT, BenchError, log
from bench.loadgen.measure import (
    descendants,
    max_open_files,
    pid_listening_on,
    raise_nofile_limit,
    read_machine_cpu,
    scan_procs,
)
from bench.loadgen.redis_resp import flush_redis
from bench.loadgen.spawn import free_port, stop_process_group

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"  # FLUSHDB'd before every server: keep it private
READY_TIMEOUT_S = 60.0
DRAIN_WAIT_S = 15.0
SRC_BASE = 11  # generator g connects from 127.0.0.(11+g)
FD_MARGIN = 48  # server fds kept free for Redis/PostgreSQL connections, logs, accept
QUIET = 0.25  # cores of other load above which a round counts as disturbed
RISE = 1.25  # average KB/socket this much above the earlier steps' counts as a rise


# --------------------------------------------------------------------------- processes


class Server:
    """``python run.py [--workers N]`` on a free loopback port, in its own process group."""

    def __init__(self, workers: int | None, env: dict[str, str], log_path: Path, root: Path = REPO_ROOT) -> None:
        self.workers = workers
        self.root = root
        self.env = env
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        cmd = [sys.executable, "run.py", "--host", "127.0.0.1", "--port", str(self.port)]
        if self.workers is not None:
            cmd += ["--workers", str(self.workers)]
        with self.log_path.open("wb") as logf:
            self.proc = await asyncio.create_subprocess_exec(
                *cmd,
                cwd=self.root,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=logf,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    raise BenchError(f"server exited with {self.proc.returncode}; see {self.log_path}")
                if self.workers is None or len(self.server_pids()) > self.workers:
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                        async with http.get(f"{self.url}/livez") as resp:
                            if resp.status == 200:
                                break
                await asyncio.sleep(0.2)
            else:
                await self.stop()
                raise BenchError(f"server did not come up; see {self.log_path}")
        if self.workers:  # every worker must be listening, not just the first
            await asyncio.sleep(1.0)
        log(f"server pid={self.pid} workers={self.workers} on {self.url}: pids {self.server_pids()}")

    def server_pids(self) -> list[int]:
        """The server's own processes: the supervisor and its python descendants (workers)."""
        procs = scan_procs()
        if self.proc is None or self.pid not in procs:
            return []
        return [self.pid, *sorted(p for p in descendants(procs, self.pid) if procs[p].comm.startswith("python"))]

    def worker_pids(self) -> list[int]:
        pids = self.server_pids()
        return pids[1:] if self.workers is not None else pids

    async def stop(self) -> None:
        if self.proc is not None:
            await stop_process_group(self.proc, grace_s=30.0)


class Gen:
    """One ``bench.scale_gen`` process, driven by JSON lines over its stdin/stdout."""

    def __init__(self, index: int, proc: asyncio.subprocess.Process) -> None:
        self.index = index
        self.proc = proc
        self.src = f"127.0.0.{SRC_BASE + index}"

    @classmethod
    async def start(cls, index: int) -> Gen:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.scale_gen",
            cwd=REPO_ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 24,
        )
        gen = cls(index, proc)
        await gen._reply()
        return gen

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def _reply(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise BenchError(f"generator {self.index} exited ({self.proc.returncode})")
        reply: dict[str, Any] = orjson.loads(line)
        if not reply.get("ok"):
            raise BenchError(f"generator {self.index}: {reply.get('error')}")
        return reply

    async def call(self, cmd: str, **kwargs: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps({"cmd": cmd, **kwargs}) + b"\n")
        await self.proc.stdin.drain()
        return await self._reply()

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(BenchError, OSError, ConnectionError):
                await asyncio.wait_for(self.call("close"), 20)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()


async def start_gens(n: int) -> list[Gen]:
    return list(await asyncio.gather(*(Gen.start(i) for i in range(n))))


async def each(gens: Sequence[Gen], cmd: str, per_gen: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(g.call(cmd, **(per_gen[i] if per_gen else {})) for i, g in enumerate(gens))))


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


# --------------------------------------------------------------------------- /proc


@dataclasses.dataclass(slots=True)
class Snapshot:
    t: float
    ticks: dict[int, tuple[int, int]]  # pid -> (starttime, utime+stime)
    machine_total: int
    machine_busy: int


def snapshot() -> Snapshot:
    procs = scan_procs()
    total, busy, _ = read_machine_cpu()
    return Snapshot(time.monotonic(), {p.pid: (p.starttime, p.ticks) for p in procs.values()}, total, busy)


def cpu_s(a: Snapshot, b: Snapshot, pids: Sequence[int]) -> float:
    ticks = 0
    for pid in pids:
        before, after = a.ticks.get(pid), b.ticks.get(pid)
        if before is not None and after is not None and before[0] == after[0]:
            ticks += after[1] - before[1]
    return ticks / CLK_TCK


def rss_kb(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def kernel_mem_kb() -> dict[str, int]:
    """Machine-wide kernel memory that grows with sockets: slab, and TCP buffer pages."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("Slab", "SUnreclaim"):
                out[key] = int(value.split()[0])
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/net/sockstat").read_text().splitlines():
            if line.startswith("TCP:"):
                fields = line.split()[1:]
                stats = dict(zip(fields[::2], fields[1::2], strict=False))
                out["tcp_inuse"] = int(stats["inuse"])
                out["tcp_mem_kb"] = int(stats["mem"]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    return out


def _addr(hexaddr: str) -> tuple[str, int]:
    ip, port = hexaddr.split(":")
    return ".".join(str(b) for b in reversed(bytes.fromhex(ip))), int(port, 16)


def connections_by_worker(
    port: int, pids: Sequence[int], http_peers: set[tuple[str, int]]
) -> dict[int, dict[str, int]]:
    """Established connections to ``port`` held by each server pid: WebSockets vs HTTP load connections."""
    remote: dict[str, tuple[str, int]] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "01" and _addr(parts[1])[1] == port:
                remote[f"socket:[{parts[9]}]"] = _addr(parts[2])
    out: dict[int, dict[str, int]] = {}
    for pid in pids:
        ws = http = 0
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    peer = remote.get(os.readlink(f"/proc/{pid}/fd/{fd}"))
                    if peer is None:
                        continue
                    if peer in http_peers:
                        http += 1
                    else:
                        ws += 1
        out[pid] = {"ws": ws, "http": http}
    return out


# --------------------------------------------------------------------------- setup


def server_env(args: argparse.Namespace, prefix: str, heartbeat_s: int) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "DB_SCHEMA": args.schema,
        "REDIS_PREFIX": prefix,
        "ACCESS_LOG": "1" if args.access_log else "0",
        "SESSION_TTL_SECONDS": "7200",
        "RATE_LIMIT_API_PER_MINUTE": "100000000",
        "SHUTDOWN_GRACE_SECONDS": "5",
        "WS_HEARTBEAT_SECONDS": str(heartbeat_s),
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("DATABASE_URL_FILE", "REDIS_URL_FILE"):
        env.pop(name, None)
    return env


async def drop_schema(database_url: str, schema: str) -> None:
    with contextlib.suppress(Exception):
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


# --------------------------------------------------------------------------- workers: 1 vs 2


async def workers_round(args: argparse.Namespace, workers: int, index: int, log_dir: Path) -> dict[str, Any]:
    tag = secrets.token_hex(3)
    await flush_redis(args.redis_url)
    server = Server(
        workers,
        server_env(args, f"bsc{tag}:", args.heartbeat),
        log_dir / f"scale-w{workers}-{index}.log",
        args.server_root,
    )
    await server.start()
    gens = await start_gens(args.generators)
    result: dict[str, Any] = {"round": index, "workers": workers, "sockets_requested": args.sockets}
    try:
        per = split(args.sockets, len(gens))
        t0 = time.monotonic()
        reg = await each(
            gens,
            "setup",
            [{"url": server.url, "tag": f"w{tag}g{g.index}", "sessions": per[g.index], "src": g.src} for g in gens],
        )
        opened = await each(gens, "open", [{"total": n} for n in per])
        result["setup_s"] = time.monotonic() - t0
        result["register_errors"] = [r["errors"] for r in reg if r["errors"]]
        result["open_errors"] = [o["errors"] for o in opened if o["errors"]]
        log(
            f"round {index} w={workers}: {sum(o['open'] for o in opened)}/{args.sockets} sockets open "
            f"in {result['setup_s']:.1f}s"
        )
        await asyncio.sleep(args.settle)
        conns = split(args.connections, len(gens))
        started = await each(gens, "start", [{"connections": c} for c in conns])
        http_peers = {(str(ip), int(port)) for s in started for ip, port in s["http_local"]}
        await asyncio.sleep(args.warmup)
        # After the warm-up: every load connection has been accepted by then.
        result["per_worker"] = list(connections_by_worker(server.port, server.worker_pids(), http_peers).values())

        pids_server = server.server_pids()
        pids_gen = [g.pid for g in gens]
        a, m0 = snapshot(), await each(gens, "mark")
        await asyncio.sleep(args.duration)
        b, m1 = snapshot(), await each(gens, "mark")
        await each(gens, "stop")
        drained = await each(gens, "drain", [{"wait_s": DRAIN_WAIT_S}] * len(gens))

        window = b.t - a.t
        events = sum(x["received"] for x in m1) - sum(x["received"] for x in m0)
        requests = sum(x["requests"] for x in m1) - sum(x["requests"] for x in m0)
        nudged = sum(x["nudged"] for x in m1) - sum(x["nudged"] for x in m0)
        server_s = cpu_s(a, b, pids_server)
        gen_s = cpu_s(a, b, pids_gen)
        redis_s = cpu_s(a, b, [args.redis_pid]) if args.redis_pid else 0.0
        own_s = cpu_s(a, b, [os.getpid()])
        busy_s = (b.machine_busy - a.machine_busy) / CLK_TCK
        missing = sum(d["missing"] for d in drained)
        extra = sum(d["extra"] for d in drained)
        bad = sum(sum(d["bad_frames"].values()) for d in drained)
        http_errors = sum(sum(d["http_errors"].values()) for d in drained)
        alive = sum(d["alive"] for d in drained)
        result.update(
            sockets_open=sum(d["open"] for d in drained),
            sockets_alive=alive,
            window_s=window,
            requests=requests,
            nudged=nudged,
            events=events,
            events_per_s=events / window,
            matches_per_s=requests / window,
            server_cpu_s=server_s,
            server_cores=server_s / window,
            server_us_per_event=server_s * 1e6 / events if events else None,
            gen_cpu_s=gen_s,
            gen_cores=gen_s / window,
            gen_us_per_event=gen_s * 1e6 / events if events else None,
            redis_cores=redis_s / window,
            other_cores=max(0.0, busy_s - server_s - gen_s - redis_s - own_s) / window,
            machine_busy_cores=busy_s / window,
            expected_total=sum(d["expected"] for d in drained),
            received_total=sum(d["received"] for d in drained),
            missing=missing,
            extra=extra,
            bad_frames=bad,
            http_errors=[d["http_errors"] for d in drained if d["http_errors"]],
            closed_codes=[d["closed_codes"] for d in drained if d["closed_codes"]],
            categories_ok=all(d["categories_ok"] for d in drained),
            drain_s=max(d["drain_s"] for d in drained),
        )
        result["verified"] = (
            missing == 0
            and extra == 0
            and bad == 0
            and http_errors == 0
            and alive == args.sockets
            and result["categories_ok"]
            and result["expected_total"] == 2 * sum(d["nudged"] for d in drained)
        )
        log(
            f"round {index} w={workers}: {result['events_per_s']:,.0f} events/s, "
            f"server {result['server_cores']:.2f} cores {_f(result['server_us_per_event'])} µs/event, "
            f"gen {result['gen_cores']:.2f} cores, redis {result['redis_cores']:.2f}, "
            f"other {result['other_cores']:.2f}; "
            f"sent {result['expected_total']} received {result['received_total']} missing {missing} extra {extra}; "
            f"per worker {result['per_worker']}"
        )
    finally:
        await asyncio.gather(*(g.close() for g in gens))
        await server.stop()
    return result


def _f(v: float | None, fmt: str = ".0f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, fmt)


def _stats(values: Sequence[float | None]) -> dict[str, float] | None:
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": vals[0], "max": vals[-1], "n": len(vals)}


def _mmr(s: dict[str, float] | None, fmt: str = ",.0f") -> str:
    if s is None:
        return "-"
    if s["n"] == 1:
        return format(s["median"], fmt)
    return f"{format(s['median'], fmt)} ({format(s['min'], fmt)}–{format(s['max'], fmt)})"


def summarize_workers(rounds: list[dict[str, Any]], pairs: list[tuple[int, int]]) -> dict[str, Any]:
    by_w: dict[int, list[dict[str, Any]]] = {}
    for r in rounds:
        by_w.setdefault(r["workers"], []).append(r)
    keys = (
        "events_per_s",
        "matches_per_s",
        "server_us_per_event",
        "server_cores",
        "gen_cores",
        "gen_us_per_event",
        "redis_cores",
        "other_cores",
        "machine_busy_cores",
        "sockets_alive",
    )
    summary: dict[str, Any] = {"by_workers": {}, "ratios": {}}
    for w, rs in sorted(by_w.items()):
        summary["by_workers"][w] = {k: _stats([r.get(k) for r in rs]) for k in keys}
        summary["by_workers"][w]["verified_rounds"] = sum(1 for r in rs if r.get("verified"))
        summary["by_workers"][w]["rounds"] = len(rs)
    quiet = [(i, j) for i, j in pairs if max(rounds[i].get("other_cores", 9), rounds[j].get("other_cores", 9)) <= QUIET]
    for key in ("events_per_s", "server_us_per_event", "server_cores"):
        for name, chosen in (("ratios", pairs), ("ratios_quiet", quiet)):
            ratios = []
            for i, j in chosen:
                lo, hi = rounds[i], rounds[j]
                if lo.get(key) and hi.get(key) and lo.get("verified") and hi.get("verified"):
                    ratios.append(hi[key] / lo[key])
            summary.setdefault(name, {})[key] = _stats(ratios)
            summary[name][key + "_pairs"] = ratios
    summary["quiet_pairs"] = len(quiet)
    return summary


def render_workers(args: argparse.Namespace, rounds: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    lines = [
        f"### run.py --workers 1 vs 2: nudges delivered ({NCPU} CPUs, shared with the load generator and Redis)",
        "",
        f"{args.sockets:,} WebSockets held, {args.generators} generator processes, {args.connections} keep-alive "
        f"`POST /match` connections (closed loop, fresh pairs), {args.warmup:g} s warm-up + {args.duration:g} s "
        f"window per round, {args.rounds} rounds per worker count interleaved in pairs; access log "
        f"{'on' if args.access_log else 'off'}; server from `{args.server_root}`. Median (min–max) over rounds.",
        "",
        "| workers | sockets held | events/s | matches/s | server CPU µs/event | server cores | generator cores "
        "(µs/event) | redis cores | other cores | verified rounds |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for w, s in summary["by_workers"].items():
        lines.append(
            f"| {w} | {_mmr(s['sockets_alive'])} | {_mmr(s['events_per_s'])} | {_mmr(s['matches_per_s'])} | "
            f"{_mmr(s['server_us_per_event'], '.1f')} | {_mmr(s['server_cores'], '.2f')} | "
            f"{_mmr(s['gen_cores'], '.2f')} ({_mmr(s['gen_us_per_event'], '.1f')}) | {_mmr(s['redis_cores'], '.2f')} | "
            f"{_mmr(s['other_cores'], '.2f')} | {s['verified_rounds']}/{s['rounds']} |"
        )
    r = summary["ratios"]
    lines += [
        "",
        "Ratio 2 workers / 1 worker, within each adjacent pair of rounds, median (min–max): "
        f"events/s **{_mmr(r['events_per_s'], '.2f')}**, "
        f"server CPU per event **{_mmr(r['server_us_per_event'], '.2f')}**, "
        f"server cores used {_mmr(r['server_cores'], '.2f')}.",
        "",
    ]
    q = summary["ratios_quiet"]
    lines += [
        f"Only the {summary['quiet_pairs']} pairs where neither round had other load above {QUIET} cores: "
        f"events/s {_mmr(q['events_per_s'], '.2f')}, server CPU per event {_mmr(q['server_us_per_event'], '.2f')}.",
        "",
        "| round | workers | events/s | server µs/event | server cores | gen cores | redis | other | sent/received "
        "(missing, extra) | sockets per worker (ws/http) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for x in rounds:
        noisy = " (!)" if x.get("other_cores", 0) > QUIET else ""
        split_ = " · ".join(f"{p['ws']}/{p['http']}" for p in x.get("per_worker", []))
        lines.append(
            f"| {x['round']} | {x['workers']} | {_f(x.get('events_per_s'), ',.0f')} | "
            f"{_f(x.get('server_us_per_event'), '.1f')} | {_f(x.get('server_cores'), '.2f')} | "
            f"{_f(x.get('gen_cores'), '.2f')} | {_f(x.get('redis_cores'), '.2f')} | "
            f"{_f(x.get('other_cores'), '.2f')}{noisy} | "
            f"{x.get('expected_total', 0):,}/{x.get('received_total', 0):,} ({x.get('missing', '-')}, "
            f"{x.get('extra', '-')}){'' if x.get('verified') else ' **FAILED**'} | {split_} |"
        )
    return "\n".join(lines) + "\n"


async def run_workers(args: argparse.Namespace) -> dict[str, Any]:
    log_dir = REPO_ROOT / ".data" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    order: list[int] = []
    pairs: list[tuple[int, int]] = []
    a, b = args.workers
    for k in range(args.rounds):
        first, second = (a, b) if k % 2 == 0 else (b, a)
        i = len(order)
        order += [first, second]
        pairs.append((i, i + 1) if first == a else (i + 1, i))
    rounds: list[dict[str, Any]] = []
    try:
        for i, w in enumerate(order):
            try:
                rounds.append(await workers_round(args, w, i, log_dir))
            except BenchError as exc:
                log(f"round {i} w={w} failed: {exc}")
                rounds.append({"round": i, "workers": w, "error": str(exc), "verified": False})
    finally:
        await flush_redis(args.redis_url)
        await drop_schema(args.database_url, args.schema)
    summary = summarize_workers(rounds, pairs)
    return {"rounds": rounds, "pairs": pairs, "summary": summary, "markdown": render_workers(args, rounds, summary)}


# --------------------------------------------------------------------------- idle sockets: RSS per socket


async def run_idle(args: argparse.Namespace) -> dict[str, Any]:
    log_dir = REPO_ROOT / ".data" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    await flush_redis(args.redis_url)
    server = Server(
        None,
        server_env(args, f"bsi{secrets.token_hex(3)}:", args.heartbeat),
        log_dir / "scale-idle.log",
        args.server_root,
    )
    await server.start()
    gens = await start_gens(args.generators)
    pid = server.pid
    steps_out: list[dict[str, Any]] = []
    over: dict[str, Any] = {}
    verdict = ""
    try:
        limit = max_open_files(pid) or 0
        if limit <= 0:
            raise BenchError("idle needs a finite open-file limit on the server (it is what ends the curve)")
        gen_cap = (args.gen_nofile - 64) * len(gens)
        sessions = min(limit + args.over, gen_cap)
        per_top = split(sessions, len(gens))
        t0 = time.monotonic()
        await each(
            gens,
            "setup",
            [{"url": server.url, "tag": f"i{g.index}", "sessions": per_top[g.index], "src": g.src} for g in gens],
        )
        log(f"idle: {sessions} sessions registered in {time.monotonic() - t0:.1f}s")
        # Baseline: a few sockets opened and exercised (code paths warm), then RSS.
        numeric = sorted(int(x) for x in args.steps if x != "max")
        base_n = min(args.base, numeric[0]) if numeric else args.base
        await each(gens, "open", [{"total": n} for n in split(base_n, len(gens))])
        await each(gens, "burst", [{"requests": 20, "connections": 4}] * len(gens))
        await each(gens, "drain", [{"wait_s": 5.0}] * len(gens))
        await asyncio.sleep(args.settle)
        rss0, kern0 = rss_kb(pid), kernel_mem_kb()
        fds0 = fd_count(pid) - base_n  # listening socket, Redis/PostgreSQL connections, logs, epoll, ...
        cap = min(limit - fds0 - FD_MARGIN, gen_cap)
        steps = sorted({cap if x == "max" else min(int(x), cap) for x in args.steps})
        log(
            f"idle: baseline {base_n} sockets, RSS {rss0.get('VmRSS')} KB; server open-file limit {limit}, "
            f"{fds0} fds besides sockets -> room for {cap} sockets; steps {steps}"
        )
        prev_n, prev_rss = base_n, rss0["VmRSS"]

        async def measure(n: int, label: str) -> dict[str, Any]:
            nonlocal prev_n, prev_rss
            rss, kern = rss_kb(pid), kernel_mem_kb()
            burst = await each(
                gens, "burst", [{"requests": max(1, args.probe // len(gens)), "connections": 4}] * len(gens)
            )
            drained = await each(gens, "drain", [{"wait_s": 5.0}] * len(gens))
            alive = sum(d["alive"] for d in drained)
            held = connections_by_worker(server.port, [pid], set())[pid]["ws"]
            row = {
                "step": label,
                "sockets": n,
                "alive_client": alive,
                "held_server": held,
                "server_fds": fd_count(pid),
                "rss_kb": rss["VmRSS"],
                "rss_anon_kb": rss.get("RssAnon"),
                "kb_per_socket": (rss["VmRSS"] - rss0["VmRSS"]) / max(1, n - base_n),
                "kb_per_socket_marginal": (rss["VmRSS"] - prev_rss) / (n - prev_n) if n > prev_n else None,
                "kernel_slab_kb_per_conn": (kern.get("Slab", 0) - kern0.get("Slab", 0)) / max(1, n - base_n),
                "kernel_tcp_mem_kb": kern.get("tcp_mem_kb"),
                "probe_nudged": sum(b["nudged"] for b in burst),
                "probe_missing": sum(d["missing"] for d in drained),
                "probe_extra": sum(d["extra"] for d in drained),
                "bad_frames": sum(sum(d["bad_frames"].values()) for d in drained),
                "closed_codes": [d["closed_codes"] for d in drained if d["closed_codes"]],
                "pings_answered": sum(d["pings"] for d in drained),
            }
            if n > prev_n:
                prev_n, prev_rss = n, rss["VmRSS"]
            log(
                f"idle {label}: {n} sockets ({alive} alive client-side, {held} held by the server), RSS "
                f"{row['rss_kb']} KB, {row['kb_per_socket']:.2f} KB/socket (marginal "
                f"{_f(row['kb_per_socket_marginal'], '.2f')}), probe {row['probe_nudged']} nudged, "
                f"{row['probe_missing']} missing"
            )
            return row

        for n in steps:
            if n <= base_n and steps_out:
                continue
            opened = await each(gens, "open", [{"total": k} for k in split(n, len(gens))])
            errors = [o["errors"] for o in opened if o["errors"]]
            await asyncio.sleep(args.settle)
            row = await measure(n, str(n))
            row["open_errors"] = errors
            steps_out.append(row)
            if errors:
                verdict = f"socket opens failed at {n}: {errors}"
                break
        if args.hold > 0 and steps_out:
            log(f"idle: holding {steps_out[-1]['sockets']} sockets {args.hold:g}s (heartbeat {args.heartbeat}s)")
            await asyncio.sleep(args.hold)
            steps_out.append(
                await measure(steps_out[-1]["sockets"], f"{steps_out[-1]['sockets']} after {args.hold:g}s")
            )
        if args.over > 0 and steps_out and not verdict and steps_out[-1]["sockets"] >= cap:
            # Past the limit: the server cannot accept more; show where it stops.
            want = min(limit - fds0 + args.over, sessions)
            opened = await each(gens, "open", [{"total": k} for k in split(want, len(gens))])
            await asyncio.sleep(args.settle)
            held = connections_by_worker(server.port, [pid], set())[pid]["ws"]
            over = {
                "asked": want,
                "held_server": held,
                "server_fds": fd_count(pid),
                "open_errors": [o["errors"] for o in opened if o["errors"]],
                "alive_client": sum(o["alive"] for o in opened),
            }
            log(f"idle: asked for {want} sockets (past the limit): server holds {held}; errors {over['open_errors']}")
    finally:
        await asyncio.gather(*(g.close() for g in gens))
        await server.stop()
        await flush_redis(args.redis_url)
        await drop_schema(args.database_url, args.schema)
    rise = find_rise(steps_out)
    top_row = steps_out[-1] if steps_out else {}
    if rise is not None:
        verdict = f"RSS per socket rises at {rise:,} sockets" + (f"; {verdict}" if verdict else "")
    elif not verdict and top_row and top_row["sockets"] >= cap:
        verdict = (
            f"RSS per socket does not rise up to {top_row['held_server']:,} sockets; the open-file limit stops one "
            f"process first: {limit:,} (the hard limit, which this environment cannot raise) minus {fds0} fds for "
            f"everything else"
        )
        if over:
            verdict += (
                f"; asked for {over['asked']:,}, the server held {over['held_server']:,} and refused the rest "
                f"({over['open_errors']})"
            )
    elif not verdict:
        verdict = f"no rise up to {top_row.get('sockets', 0):,} sockets (the largest step asked for)"
    out = {
        "server_open_file_limit": limit,
        "server_fds_besides_sockets": fds0,
        "room_for_sockets": cap,
        "baseline_sockets": base_n,
        "baseline_rss_kb": rss0,
        "steps": steps_out,
        "over_limit": over,
        "rise_at": rise,
        "verdict": verdict,
    }
    out["markdown"] = render_idle(args, out)
    return out


def find_rise(rows: list[dict[str, Any]]) -> int | None:
    """First step whose average KB/socket is more than 25 % above the highest average of the steps before it.

    Steps below 5,000 sockets are not a reference: there the average is still climbing
    from below (the baseline's allocator slack is being used up first).
    """
    ref: float | None = None
    for row in rows:
        kb = row["kb_per_socket"]
        if ref is not None and kb > RISE * ref:
            return int(row["sockets"])
        if row["sockets"] >= 5000:
            ref = kb if ref is None else max(ref, kb)
    return None


def render_idle(args: argparse.Namespace, out: dict[str, Any]) -> str:
    lines = [
        "### Idle WebSockets held by one process: RSS per socket",
        "",
        f"One `run.py` process from `{args.server_root}` (heartbeat {args.heartbeat} s);"
        f" baseline: {out['baseline_sockets']} sockets open, "
        f"VmRSS {out['baseline_rss_kb'].get('VmRSS', 0):,} KB. KB/socket = (VmRSS − baseline) / (sockets − "
        f"{out['baseline_sockets']}); marginal = since the previous step. Kernel slab is machine-wide and covers both "
        f"ends of each loopback connection. Probe: {args.probe} random pairs matched, every nudge checked.",
        "",
        "| sockets | held by server | alive (client) | VmRSS KB | KB/socket | marginal KB/socket | kernel slab KB/conn "
        "| probe nudges missing |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in out["steps"]:
        lines.append(
            f"| {r['step']} | {r['held_server']:,} | {r['alive_client']:,} | {r['rss_kb']:,} | "
            f"{r['kb_per_socket']:.2f} | {_f(r['kb_per_socket_marginal'], '.2f')} | "
            f"{r['kernel_slab_kb_per_conn']:.1f} | {r['probe_missing']} of {2 * r['probe_nudged']} |"
        )
    lines += ["", f"**{out['verdict']}.**"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="scenario", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--generators", type=int, default=2, help="load-generator processes (default 2)")
    common.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL") or DEFAULT_DATABASE_URL)
    common.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_SCALE_REDIS_URL") or DEFAULT_REDIS_URL,
        help="a Redis db of its own: it is FLUSHDB'd before every server (default db 12)",
    )
    common.add_argument("--access-log", action="store_true", help="leave the server's access log on")
    common.add_argument(
        "--server-root",
        type=Path,
        default=REPO_ROOT,
        help="run the server's run.py from this tree (e.g. `git archive HEAD | tar -x -C DIR`: a pinned commit "
        "instead of a working tree that is being edited); default: this repository",
    )
    common.add_argument("--json", type=Path, help="write every figure here")
    common.add_argument("--markdown", type=Path, help="write the report here too")

    w = sub.add_parser("workers", parents=[common], help="events/s and CPU per event, --workers 1 vs 2")
    w.add_argument("--workers", type=int, nargs=2, default=[1, 2], metavar=("A", "B"))
    w.add_argument("--rounds", type=int, default=5, help="rounds per worker count (interleaved in pairs)")
    w.add_argument("--sockets", type=int, default=10_000)
    w.add_argument("--connections", type=int, default=48, help="POST /match connections over all generators")
    w.add_argument("--warmup", type=float, default=3.0)
    w.add_argument("--duration", type=float, default=10.0)
    w.add_argument("--settle", type=float, default=2.0, help="seconds between the last socket open and the load")
    w.add_argument("--heartbeat", type=int, default=300, help="WS_HEARTBEAT_SECONDS (long: no ping burst in a window)")

    i = sub.add_parser("idle", parents=[common], help="RSS per idle socket at increasing socket counts")
    i.add_argument(
        "--steps", type=lambda s: s.split(","), default=["1000", "2000", "5000", "10000", "15000", "19000", "max"]
    )
    i.add_argument("--base", type=int, default=200, help="sockets open for the baseline RSS")
    i.add_argument("--settle", type=float, default=5.0)
    i.add_argument("--probe", type=int, default=40, help="random matches per step whose nudges are checked")
    i.add_argument("--hold", type=float, default=35.0, help="hold the last step this long, then measure again")
    i.add_argument("--heartbeat", type=int, default=30, help="WS_HEARTBEAT_SECONDS (the default)")
    i.add_argument("--over", type=int, default=100, help="then ask for this many sockets past the limit (0: don't)")
    return parser


async def _stoppable(coro: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """SIGTERM or SIGINT (also when started in the background, where SIGINT is ignored) cancels the run;
    the servers and generators are then stopped by their ``finally`` blocks."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    return await coro


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    soft, hard = raise_nofile_limit()
    args.gen_nofile = soft
    args.schema = f"bench_scale_{secrets.token_hex(3)}"
    args.redis_pid = pid_listening_on(int(args.redis_url.rsplit(":", 1)[1].split("/")[0]))
    args.server_root = args.server_root.resolve()
    if not (args.server_root / "run.py").is_file():
        raise SystemExit(f"no run.py in {args.server_root}")
    log(
        f"open-file limit {soft}/{hard} (generators and server inherit it), redis pid {args.redis_pid}, "
        f"schema {args.schema}, server from {args.server_root}"
    )
    t0 = time.monotonic()
    if args.scenario == "workers":
        if args.sockets + args.connections + 64 > soft * args.generators:
            raise SystemExit(f"{args.sockets} sockets need more generators than {args.generators} at {soft} fds each")
        result = asyncio.run(_stoppable(run_workers(args)))
    else:
        result = asyncio.run(_stoppable(run_idle(args)))
    result["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    result["wall_s"] = time.monotonic() - t0
    print(result["markdown"])
    if args.markdown:
        args.markdown.write_text(result["markdown"])
    if args.json:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
