"""Prometheus metrics, exposed on ``GET /metrics`` (admin token).

Each app has its own ``CollectorRegistry`` (several apps may run in one
process, as in the tests). Request counts and latencies are kept in plain
dicts by the ``request_context`` middleware (one dict update and one bisect
per request: the hot path's CPU is a measured goal) and turned into metric
families only when scraped; every other figure (sockets, events, pub/sub
reconnects, flush lag, pools) is read from the live objects at scrape time.

Several processes (``run.py --workers N``): a scrape through the shared port
reaches one worker, yet must report the whole server. The supervisor gives
every worker one directory, ``PROMETHEUS_MULTIPROC_DIR``, and each worker
copies its figures there (``SharedMetrics``) every
``PUBLISH_INTERVAL_SECONDS``, when it answers a scrape, and once more when it
stops, in prometheus-client's multiprocess file format; the worker answering
a scrape merges every file with the library's ``MultiProcessCollector``.
Counters and histograms are summed over every process that ever ran (a
worker that died keeps its last counts, so the sums never go down); gauges
are combined over the live ones only (``GAUGE_MODES``; the supervisor calls
``mark_process_dead`` for a worker that exits). Another worker's figures are
thus at most ``PUBLISH_INTERVAL_SECONDS`` old.

Why not prometheus-client's multiprocess ``Counter``/``Histogram`` directly:
their updates lock and write the mmap on every request, ~5 µs against
under 1 µs for the two dict updates here (a ``/match`` costs ~120 µs of
server CPU). Copying what changed once a second costs ~0.1 ms a second and
nothing on the hot path; one process alone (no ``PROMETHEUS_MULTIPROC_DIR``)
copies nothing. Merging the files for a scrape (~10 ms for a few hundred
series per worker) runs in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, TypeVar

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from store.proximity import MatchDecision
from store.redis_client import pool_stats

# Upper bounds (seconds) of the request latency histogram's buckets.
LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The route label of a request that matched no route (404, or 405 on a known path).
UNMATCHED_ROUTE: Final = "unmatched"
# Where the workers of one server share their figures (set by the supervisor).
MULTIPROC_DIR_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
# How often a worker copies its figures there (also when it answers a scrape, and when it stops).
PUBLISH_INTERVAL_SECONDS: Final = 1.0
# How a gauge is combined over the live workers (prometheus-client's multiprocess_mode).
GAUGE_MODES: Final = {
    "proximity_processes": "livesum",
    "proximity_websockets_open": "livesum",
    "proximity_websockets_subscribed": "livesum",
    "proximity_pubsub_connected": "livemin",  # 1 only while every worker's listener is connected
    "proximity_counter_flush_lag_seconds": "livemax",  # the worker that flushed longest ago
    "proximity_pg_pool_connections": "livesum",
    "proximity_pg_pool_max_connections": "livesum",
    "proximity_redis_pool_connections": "livesum",
}
DEFAULT_GAUGE_MODE: Final = "livesum"
REQUESTS_METRIC: Final = "proximity_http_requests"
REQUESTS_HELP: Final = "HTTP requests by route (canonical path), method and status"
LATENCY_METRIC: Final = "proximity_http_request_duration_seconds"
LATENCY_HELP: Final = "HTTP request latency by route and method"


def multiprocess_dir() -> Path | None:
    """``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's own variable), when set."""
    value = os.environ.get(MULTIPROC_DIR_ENV)
    return Path(value) if value else None


class RequestMetrics:
    """Requests by (route, method, status) and latency by (route, method).

    ``route`` is the route's canonical path (``/ws/{ble_token}``), never the
    raw path, so the label set stays bounded.
    """

    __slots__ = ("counts", "latency")

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int], int] = {}
        # (route, method) -> [count per bucket ..., count over the last bound, sum of seconds]
        self.latency: dict[tuple[str, str], list[float]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        counts = self.counts
        key = (route, method, status)
        counts[key] = counts.get(key, 0) + 1
        hist = self.latency.get((route, method))
        if hist is None:
            hist = self.latency[(route, method)] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        hist[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        hist[-1] += seconds


class NudgeCounter:
    """Counts the match decisions that published a nudge (the hot path's events).

    Registered with the proximity service as a decision listener (see
    ``proximity_server/app/lifecycle.py``)."""

    __slots__ = ("published",)

    def __init__(self) -> None:
        self.published = 0

    def observe(self, decision: MatchDecision) -> None:
        if decision.nudged:
            self.published += 1


_T = TypeVar("_T")


def _safe(read: Callable[[], _T]) -> _T | None:
    try:
        return read()
    except Exception:
        return None


class AppCollector(Collector):
    """Builds every metric family at scrape time.

    ``sources`` maps a name to a callable returning the live object (or None
    while it does not exist yet), so the collector never holds stale state.
    ``nudges`` is counted by a listener of the proximity service.
    """

    def __init__(
        self,
        requests: RequestMetrics,
        sources: dict[str, Callable[[], Any]],
        started_at: float,
        nudges: NudgeCounter | None = None,
    ) -> None:
        self._requests = requests
        self._sources = sources
        self._started_at = started_at
        self._nudges = nudges if nudges is not None else NudgeCounter()

    def _get(self, name: str) -> Any:
        return _safe(self._sources[name])

    @property
    def requests(self) -> RequestMetrics:
        return self._requests

    def collect(self) -> Iterator[Metric]:
        yield from self._http()
        yield from self.live()

    def live(self) -> Iterator[Metric]:
        """Every family but the request counts: read from the live objects."""
        processes = GaugeMetricFamily("proximity_processes", "Server processes whose figures this scrape includes")
        processes.add_metric([], 1)
        yield processes
        hub = self._get("hub")
        broker = self._get("broker")
        flusher = self._get("flusher")
        pool = self._get("pg_pool")
        redis = self._get("redis")

        sockets = GaugeMetricFamily(
            "proximity_websockets_open", "WebSockets held by this process (proximity and user sockets)"
        )
        subscribed = GaugeMetricFamily(
            "proximity_websockets_subscribed", "WebSockets joined to a channel (they receive events)"
        )
        if hub is not None:
            sockets.add_metric([], len(hub.sockets))
            subscribed.add_metric([], hub.connection_count)
        yield sockets
        yield subscribed

        published = CounterMetricFamily(
            "proximity_nudges_published", "Match decisions of this process that published a nudge to both tokens"
        )
        published.add_metric([], self._nudges.published)
        yield published
        delivered = CounterMetricFamily(
            "proximity_events_delivered", "Events (nudges, user events) handed to this process's sockets"
        )
        delivered.add_metric([], hub.events_delivered if hub is not None else 0)
        yield delivered

        reconnects = CounterMetricFamily(
            "proximity_pubsub_reconnects", "Times the pub/sub listener lost its Redis connection"
        )
        connected = GaugeMetricFamily("proximity_pubsub_connected", "1 while the pub/sub listener is connected")
        if broker is not None:
            reconnects.add_metric([], broker.reconnects)
            connected.add_metric([], 1 if broker.connected else 0)
        yield reconnects
        yield connected

        lag = GaugeMetricFamily(
            "proximity_counter_flush_lag_seconds",
            "Seconds since the counters were last flushed to PostgreSQL (since start, before the first flush)",
        )
        if flusher is not None:
            last = flusher.last_flush_at
            lag.add_metric([], max(0.0, time.time() - (last if last is not None else self._started_at)))
        yield lag

        pg = GaugeMetricFamily(
            "proximity_pg_pool_connections", "PostgreSQL pool connections by state", labels=["state"]
        )
        pg_max = GaugeMetricFamily("proximity_pg_pool_max_connections", "PostgreSQL pool size limit")
        if pool is not None:
            size, idle = pool.get_size(), pool.get_idle_size()
            pg.add_metric(["in_use"], size - idle)
            pg.add_metric(["idle"], idle)
            pg_max.add_metric([], pool.get_max_size())
        yield pg
        yield pg_max

        rd = GaugeMetricFamily(
            "proximity_redis_pool_connections",
            "redis-py pool connections by state (the hot path's one multiplexed connection is not counted)",
            labels=["state"],
        )
        stats = _safe(lambda: pool_stats(redis)) if redis is not None else None
        if stats is not None:
            rd.add_metric(["in_use"], stats.in_use)
            rd.add_metric(["idle"], stats.idle)
        yield rd

    def _http(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(REQUESTS_METRIC, REQUESTS_HELP, labels=["route", "method", "status"])
        for (route, method, status), count in list(self._requests.counts.items()):
            requests.add_metric([route, method, str(status)], count)
        yield requests
        latency = HistogramMetricFamily(LATENCY_METRIC, LATENCY_HELP, labels=["route", "method"])
        bounds = [*(_bound(b) for b in LATENCY_BUCKETS), "+Inf"]
        for (route, method), hist in list(self._requests.latency.items()):
            cumulative = 0.0
            buckets: list[tuple[str, float]] = []
            for bound, observed in zip(bounds, hist[:-1], strict=True):
                cumulative += observed
                buckets.append((bound, cumulative))
            latency.add_metric([route, method], buckets, hist[-1])
        yield latency


def _bound(value: float) -> str:
    return "+Inf" if math.isinf(value) else repr(value)


class SharedMetrics:
    """This process's figures, copied to the workers' shared directory, and
    the whole server's, merged from it (see the module docstring).

    A copy writes only what changed since the last one: the request dicts
    are compared entry by entry, and each file key is formatted once."""

    def __init__(self, directory: Path, collector: AppCollector, process_id: int | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._directory = directory
        self._collector = collector
        self._process_id = os.getpid() if process_id is None else process_id
        self._files: dict[str, MmapedDict] = {}
        # (file prefix, key) -> the value last written.
        self._written: dict[tuple[str, str], float] = {}
        # Counts that an earlier process with the same pid left in its files:
        # ours are added to them, so a sum never goes down.
        self._base: dict[tuple[str, str], float] = {}
        self._request_keys: dict[tuple[str, str, int], str] = {}
        self._sample_keys: dict[tuple[object, ...], str] = {}
        self._counts_copied: dict[tuple[str, str, int], int] = {}
        self._latency_copied: dict[tuple[str, str], list[float]] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(self.registry, path=str(directory))  # type: ignore[no-untyped-call]

    def publish(self) -> None:
        """Write this process's current figures (the ones that changed)."""
        requests = self._collector.requests
        copied_counts = self._counts_copied
        for series, count in list(requests.counts.items()):
            if copied_counts.get(series) != count:
                copied_counts[series] = count
                self._write("counter", self._request_key(series), count)
        copied_latency = self._latency_copied
        for route_method, hist in list(requests.latency.items()):
            before = copied_latency.get(route_method)
            if before != hist:
                keys = self._latency_keys(route_method)
                for index, value in enumerate(hist):
                    if before is None or before[index] != value:
                        self._write("histogram", keys[index], value)
                copied_latency[route_method] = list(hist)
        self._publish_live()

    def _publish_live(self) -> None:
        gauges_seen: set[tuple[str, str]] = set()
        for family in self._collector.live():
            if family.type == "gauge":
                prefix = "gauge_" + GAUGE_MODES.get(family.name, DEFAULT_GAUGE_MODE)
            elif family.type == "counter":
                prefix = "counter"
            else:  # pragma: no cover (live() yields gauges and counters only)
                raise TypeError(f"cannot share a {family.type} ({family.name})")
            for sample in family.samples:
                key = self._sample_key(family, sample.name, sample.labels)
                self._write(prefix, key, sample.value)
                if family.type == "gauge":
                    gauges_seen.add((prefix, key))
        # A gauge's label set that is no longer reported (a pool state with no connections) reads 0.
        for prefix, key in [k for k in self._written if k[0].startswith("gauge_") and k not in gauges_seen]:
            self._write(prefix, key, 0.0)

    def _request_key(self, series: tuple[str, str, int]) -> str:
        key = self._request_keys.get(series)
        if key is None:
            route, method, status = series
            labels = {"route": route, "method": method, "status": str(status)}
            key = self._request_keys[series] = _key(REQUESTS_METRIC, REQUESTS_METRIC + "_total", labels, REQUESTS_HELP)
        return key

    def _latency_keys(self, series: tuple[str, str]) -> list[str]:
        """The file keys of one latency series: a bucket each (``le``), then ``_sum``."""
        route, method = series
        keys = [
            _key(LATENCY_METRIC, LATENCY_METRIC + "_bucket", {"route": route, "method": method, "le": le}, LATENCY_HELP)
            for le in [*(_bound(bound) for bound in LATENCY_BUCKETS), "+Inf"]
        ]
        keys.append(_key(LATENCY_METRIC, LATENCY_METRIC + "_sum", {"route": route, "method": method}, LATENCY_HELP))
        return keys

    def _sample_key(self, family: Metric, name: str, labels: dict[str, str]) -> str:
        cache_key = (name, *sorted(labels.items()))
        key = self._sample_keys.get(cache_key)
        if key is None:
            key = self._sample_keys[cache_key] = _key(family.name, name, labels, family.documentation)
        return key

    def _write(self, prefix: str, key: str, value: float) -> None:
        file = self._files.get(prefix)
        if file is None:
            file = self._open(prefix)
        if not prefix.startswith("gauge_"):
            value += self._base.get((prefix, key), 0.0)
        if self._written.get((prefix, key)) != value:
            file.write_value(key, value, 0.0)  # type: ignore[no-untyped-call]
            self._written[(prefix, key)] = value

    def _open(self, prefix: str) -> MmapedDict:
        path = self._directory / f"{prefix}_{self._process_id}.db"
        if not prefix.startswith("gauge_") and path.exists():  # the pid was reused
            for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):  # type: ignore[no-untyped-call]
                self._base[(prefix, key)] = value
        file = self._files[prefix] = MmapedDict(str(path))  # type: ignore[no-untyped-call]
        return file

    def merged(self) -> bytes:
        """The whole server's figures, from the files (no live object is
        read: this may run in a thread, after ``publish`` on the loop)."""
        return generate_latest(self.registry)

    def close(self) -> None:
        for file in self._files.values():
            file.close()  # type: ignore[no-untyped-call]
        self._files.clear()


def _key(metric: str, sample: str, labels: dict[str, str], help_text: str) -> str:
    """A file key, as prometheus-client's own multiprocess values write it."""
    return str(mmap_key(metric, sample, list(labels), list(labels.values()), help_text))


class Metrics:
    """One app's registry, request counters and nudge counter."""

    def __init__(self, sources: dict[str, Callable[[], Any]]) -> None:
        self.requests = RequestMetrics()
        self.nudges = NudgeCounter()
        self.registry = CollectorRegistry(auto_describe=False)
        self._collector = AppCollector(self.requests, sources, time.time(), self.nudges)
        self.registry.register(self._collector)
        self.shared: SharedMetrics | None = None

    def share(self, directory: Path) -> SharedMetrics:
        """From now on, publish to ``directory`` and report what every process there published."""
        self.shared = SharedMetrics(directory, self._collector)
        return self.shared

    def render(self) -> bytes:
        """This process's figures; with several workers, the whole server's
        (a merge of every worker's files: ``render_async`` does it off the loop)."""
        if self.shared is not None:
            self.shared.publish()
            return self.shared.merged()
        return generate_latest(self.registry)

    async def render_async(self) -> bytes:
        if self.shared is None:
            return generate_latest(self.registry)
        self.shared.publish()  # on the loop: it reads the live objects
        return await asyncio.to_thread(self.shared.merged)
