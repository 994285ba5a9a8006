"""The command line: ``python -m bench.loadgen SCENARIO [options]`` (see bench/README.md).

Parses the flags, spawns servers (or targets ``--url``), runs the scenarios, and
prints/writes the report."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from bench.loadgen.client import MSGPACK_SUBPROTOCOL
from bench.loadgen.common import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, BenchError, check_loopback, log
from bench.loadgen.measure import pid_listening_on, raise_nofile_limit, service_roots_for
from bench.loadgen.report import json_default, machine_meta, render
from bench.loadgen.scenarios.accounts import scenario_me
from bench.loadgen.scenarios.base import RunConfig
from bench.loadgen.scenarios.idle_ws import scenario_idle_ws
from bench.loadgen.scenarios.nudge import scenario_nudge
from bench.loadgen.scenarios.proximity import scenario_livez, scenario_match, scenario_rotate, scenario_session
from bench.loadgen.spawn import ServerOptions, SpawnedServer, cluster_node_urls, local_redis_cluster

SCENARIOS = ("livez", "session", "match", "rotate", "me", "nudge", "idle_ws", "all")

#: Scenarios whose windows alternate with livez windows on the same server.


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
    with local_redis_cluster(args.redis_cluster) as redis_cluster_url:
        return await _run_on(args, redis_cluster_url)


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
    redis_urls = [redis_cluster_url, *cluster_node_urls(redis_cluster_url)] if redis_cluster_url else [args.redis_url]
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
        elif sc == "rotate":
            results["rotate"] = await scenario_rotate(cfg)
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
                default=json_default,
                option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS,
            )
        )
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
