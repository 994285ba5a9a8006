"""What every part of the load generator shares: paths, default service URLs, errors,
progress logging, the loopback-only check, and small number helpers."""

from __future__ import annotations

import ipaddress
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parents[2]

CLK_TCK = os.sysconf("SC_CLK_TCK")

NCPU = os.cpu_count() or 1

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"  # db 9 is used (and flushed) by others


class BenchError(RuntimeError):
    """A benchmark could not be run (server missing, setup failed, ...)."""


def log(msg: str) -> None:
    """Progress messages go to stderr so stdout stays a clean report."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(vals) if vals else None


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


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


def sum_opt(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def fmt(v: float | None, fmt: str = ".1f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, fmt)
