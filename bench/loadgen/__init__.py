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

Layout
------
``__main__``            the CLI (flags, which scenarios run on which server)
``spawn``               starting/stopping ``run.py`` servers, ``--redis-cluster``
``measure``             CPU from ``/proc``, RSS, percentiles, the closed-loop load window
``report``              markdown tables, machine metadata, JSON output
``client``              sessions, WebSockets and their reader tasks
``redis_resp``          a tiny RESP client (FLUSHDB, INFO memory)
``common``              paths, default URLs, errors, logging, small helpers
``scenarios.proximity`` livez, session, match
``scenarios.accounts``  me
``scenarios.nudge``     nudge
``scenarios.idle_ws``   idle_ws

The names below are the library API (``bench.scale`` and ``bench.chat`` use it).
"""

from __future__ import annotations

from bench.loadgen.common import (
    CLK_TCK,
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    NCPU,
    REPO_ROOT,
    BenchError,
    check_loopback,
    log,
)
from bench.loadgen.measure import (
    CpuWindow,
    LatencyStats,
    PhaseResult,
    cpu_window,
    descendants,
    max_open_files,
    pid_listening_on,
    raise_nofile_limit,
    read_machine_cpu,
    rss_kb,
    run_load,
    scan_procs,
    service_roots_for,
    take_cpu_snapshot,
)
from bench.loadgen.redis_resp import flush_redis, redis_commands
from bench.loadgen.spawn import ServerOptions, SpawnedServer, free_port, stop_process_group

__all__ = [
    "CLK_TCK",
    "DEFAULT_DATABASE_URL",
    "DEFAULT_REDIS_URL",
    "NCPU",
    "REPO_ROOT",
    "BenchError",
    "CpuWindow",
    "LatencyStats",
    "PhaseResult",
    "ServerOptions",
    "SpawnedServer",
    "check_loopback",
    "cpu_window",
    "descendants",
    "flush_redis",
    "free_port",
    "log",
    "max_open_files",
    "pid_listening_on",
    "raise_nofile_limit",
    "read_machine_cpu",
    "redis_commands",
    "rss_kb",
    "run_load",
    "scan_procs",
    "service_roots_for",
    "stop_process_group",
    "take_cpu_snapshot",
]
