"""Reporting: the markdown tables printed at the end (and written by ``--markdown``),
machine metadata and JSON encoding of the results (``--json``)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from bench.loadgen.common import CLK_TCK, NCPU, fmt, sum_opt
from bench.loadgen.measure import LatencyStats, PhaseResult

#: Scenarios reported as "X vs livez" tables (alternating windows on one server).
VERSUS_SCENARIOS = ("match", "me")


def md_row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def md_table(header: Sequence[str], align: str, rows: Sequence[str]) -> list[str]:
    """``align``: one char per column, ``l`` or ``r``."""
    sep = md_row(*("---" if a == "l" else "---:" for a in align))
    return [md_row(*header), sep, *rows, ""]


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
        fmt(p.latency.p50_ms, ".2f"),
        fmt(p.latency.p99_ms, ".2f"),
        fmt(c.server_us_per_req if c else None),
        fmt(c.services_us_per_req if c else None),
        fmt(c.client_us_per_req if c else None),
        f"{fmt(c.machine_busy_cores if c else None, '.2f')}/{NCPU}",
        fmt(c.other_busy_cores if c else None, ".2f"),
        sum(p.errors.values()),
    )


def _render_versus(name: str, s: dict[str, Any]) -> list[str]:
    lz, mt = s["livez"], s[name]
    rows = [
        md_row(
            "throughput req/s",
            fmt(lz["rps_median"], ".0f"),
            fmt(mt["rps_median"], ".0f"),
            fmt(s[f"throughput_ratio_{name}_over_livez"], ".3f"),
        ),
        md_row("p50 ms", fmt(lz["p50_ms_median"], ".2f"), fmt(mt["p50_ms_median"], ".2f"), ""),
        md_row("p99 ms", fmt(lz["p99_ms_median"], ".2f"), fmt(mt["p99_ms_median"], ".2f"), ""),
        md_row(
            "server CPU µs/req",
            fmt(lz["server_us_per_req_median"]),
            fmt(mt["server_us_per_req_median"]),
            fmt(s[f"cpu_per_req_ratio_{name}_over_livez"], ".2f"),
        ),
        md_row(
            "redis+postgres CPU µs/req",
            fmt(lz["services_us_per_req_median"]),
            fmt(mt["services_us_per_req_median"]),
            "",
        ),
        md_row(
            "server + redis/pg CPU µs/req",
            fmt(sum_opt(lz["server_us_per_req_median"], lz["services_us_per_req_median"])),
            fmt(sum_opt(mt["server_us_per_req_median"], mt["services_us_per_req_median"])),
            fmt(s["cpu_per_req_ratio_incl_services"], ".2f"),
        ),
    ]
    tp = ", ".join(fmt(r, ".3f") for r in s["throughput_ratio_per_round"])
    cpu = ", ".join(fmt(r, ".2f") for r in s["cpu_per_req_ratio_per_round"])
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
                fmt(lb.p50_ms, ".2f"),
                fmt(lb.p90_ms, ".2f"),
                fmt(lb.p99_ms, ".2f"),
                fmt(lb.max_ms, ".2f"),
                fmt(r["latency_a"].p50_ms, ".2f"),
                fmt(r["match_http"].p50_ms, ".2f"),
                fmt(r["nudges_per_s"], ".0f"),
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
        fmt(r["kb_per_socket"], ".2f"),
        fmt(r["kb_per_socket_incl_session"], ".2f"),
        fmt(r["redis_bytes_per_socket"], ".0f"),
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


def json_default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, Counter):
        return dict(obj)
    raise TypeError(type(obj).__name__)
