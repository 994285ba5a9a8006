"""What the scenarios share: their run configuration, phase summaries, and the
alternating "X vs livez" comparison."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from bench.loadgen.common import median, ratio, sum_opt
from bench.loadgen.measure import LoadConfig, PhaseResult


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
            sum_opt(ot["server_us_per_req_median"], ot["services_us_per_req_median"]),
            sum_opt(lz["server_us_per_req_median"], lz["services_us_per_req_median"]),
        ),
    }
