"""Prometheus metrics, exposed on ``GET /metrics`` (admin token).

Each app has its own ``CollectorRegistry`` (several apps may run in one
process, as in the tests). Request counts and latencies are kept in plain
dicts by the ``request_context`` middleware (one dict update and one bisect
per request: the hot path's CPU is a measured goal) and turned into metric
families only when scraped; every other figure (sockets, events, pub/sub
reconnects, flush lag, pools) is read from the live objects at scrape time.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from proximity_server.proximity import ProximityService
from store.proximity import MatchDecision

# Upper bounds (seconds) of the request latency histogram's buckets.
LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The route label of a request that matched no route (404, or 405 on a known path).
UNMATCHED_ROUTE: Final = "unmatched"


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


class MeteredProximityService(ProximityService):
    """Counts the match decisions that published a nudge (the hot path's events)."""

    nudges_published = 0

    async def attempt_match(self, own_token: object, detected_token: object, secret: str | None) -> MatchDecision:
        decision = await super().attempt_match(own_token, detected_token, secret)
        if decision.nudged:
            self.nudges_published += 1
        return decision


def _safe(read: Callable[[], float | None]) -> float | None:
    try:
        return read()
    except Exception:
        return None


class AppCollector(Collector):
    """Builds every metric family at scrape time.

    ``sources`` maps a name to a callable returning the live object (or None
    while it does not exist yet), so the collector never holds stale state.
    """

    def __init__(self, requests: RequestMetrics, sources: dict[str, Callable[[], Any]], started_at: float) -> None:
        self._requests = requests
        self._sources = sources
        self._started_at = started_at

    def _get(self, name: str) -> Any:
        return _safe(self._sources[name])

    def collect(self) -> Iterator[Metric]:
        yield from self._http()
        hub = self._get("hub")
        broker = self._get("broker")
        proximity = self._get("proximity")
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
        published.add_metric([], getattr(proximity, "nudges_published", 0))
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
        for state, count in _redis_pool_counts(redis):
            rd.add_metric([state], count)
        yield rd

    def _http(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "proximity_http_requests",
            "HTTP requests by route (canonical path), method and status",
            labels=["route", "method", "status"],
        )
        for (route, method, status), count in list(self._requests.counts.items()):
            requests.add_metric([route, method, str(status)], count)
        yield requests
        latency = HistogramMetricFamily(
            "proximity_http_request_duration_seconds",
            "HTTP request latency by route and method",
            labels=["route", "method"],
        )
        bounds = [*(_bound(b) for b in LATENCY_BUCKETS), "+Inf"]
        for (route, method), hist in list(self._requests.latency.items()):
            cumulative = 0.0
            buckets: list[tuple[str, float]] = []
            for bound, observed in zip(bounds, hist[:-1], strict=True):
                cumulative += observed
                buckets.append((bound, cumulative))
            latency.add_metric([route, method], buckets, hist[-1])
        yield latency


def _redis_pool_counts(redis: Any) -> list[tuple[str, int]]:
    """(state, connections) of the redis-py pool: ``in_use`` and ``idle``."""
    if redis is None:
        return []
    try:
        counts = redis.connection_pool.get_connection_count()
        return [
            ("in_use" if attributes.get("db.client.connection.state") == "used" else "idle", int(count))
            for count, attributes in counts
        ]
    except Exception:
        return []


def _bound(value: float) -> str:
    return "+Inf" if math.isinf(value) else repr(value)


class Metrics:
    """One app's registry and request counters."""

    def __init__(self, sources: dict[str, Callable[[], Any]]) -> None:
        self.requests = RequestMetrics()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(AppCollector(self.requests, sources, time.time()))

    def render(self) -> bytes:
        return generate_latest(self.registry)
