"""/metrics reports the whole server when several workers share the port:
each worker copies its figures to the supervisor's directory
(PROMETHEUS_MULTIPROC_DIR), the one answering a scrape merges them. Counters
are summed over every worker that ever ran; gauges over the live ones."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
from prometheus_client.multiprocess import mark_process_dead
from prometheus_client.parser import text_string_to_metric_families

from config.settings import Settings
from proximity_server.runtime.metrics import AppCollector, RequestMetrics, SharedMetrics
from tests.conftest import ADMIN_TOKEN
from tests.helpers import bearer
from tests.servers import env_for, free_port, read_log, start_run_py, stop_process, wait_for_log, wait_until_live

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
STATS_401 = ("proximity_http_requests_total", (("method", "GET"), ("route", "/stats"), ("status", "401")))
SOCKETS = ("proximity_websockets_open", ())
PROCESSES = ("proximity_processes", ())
# Generous for a loaded 2-core machine; a worker publishes every second.
WAIT_SECONDS = 10.0


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


# In one process: two publishers standing for two workers.


def worker_figures(sockets: int) -> tuple[RequestMetrics, AppCollector]:
    requests = RequestMetrics()
    hub = SimpleNamespace(sockets=[object()] * sockets, connection_count=sockets, events_delivered=0)
    sources: dict[str, Callable[[], Any]] = {
        name: (lambda: None) for name in ("broker", "proximity", "flusher", "pg_pool", "redis")
    }
    sources["hub"] = lambda: hub
    return requests, AppCollector(requests, sources, time.time())


def scrape_shared(shared: SharedMetrics) -> Samples:
    """What the worker behind ``shared`` answers to a scrape."""
    shared.publish()
    return parse(shared.merged().decode())


def test_counters_sum_over_every_worker_gauges_over_the_live_ones(tmp_path: Path) -> None:
    one_requests, one = worker_figures(sockets=3)
    two_requests, two = worker_figures(sockets=4)
    for _ in range(3):
        one_requests.observe("/match", "POST", 200, 0.0003)
    for _ in range(2):
        two_requests.observe("/match", "POST", 200, 0.02)
    shared_one = SharedMetrics(tmp_path, one, process_id=101)
    shared_two = SharedMetrics(tmp_path, two, process_id=102)
    shared_two.publish()

    samples = scrape_shared(shared_one)
    match = (("method", "POST"), ("route", "/match"))
    latency = "proximity_http_request_duration_seconds"
    assert samples[("proximity_http_requests_total", (*match, ("status", "200")))] == 5
    assert samples[(latency + "_count", match)] == 5
    assert samples[(latency + "_bucket", (("le", "0.0005"), *match))] == 3
    assert samples[(latency + "_bucket", (("le", "0.025"), *match))] == 5
    assert samples[(latency + "_sum", match)] == 3 * 0.0003 + 2 * 0.02
    assert samples[SOCKETS] == 7
    assert samples[PROCESSES] == 2

    # Worker 102 exits: its sockets leave the sum, its requests stay counted.
    shared_two.close()
    mark_process_dead(102, str(tmp_path))  # type: ignore[no-untyped-call]
    samples = scrape_shared(shared_one)
    assert samples[SOCKETS] == 3
    assert samples[PROCESSES] == 1
    assert samples[("proximity_http_requests_total", (*match, ("status", "200")))] == 5

    # A new worker that happens to get pid 102 adds to the old counts instead of overwriting them.
    new_requests, new = worker_figures(sockets=1)
    new_requests.observe("/match", "POST", 200, 0.001)
    shared_new = SharedMetrics(tmp_path, new, process_id=102)
    shared_new.publish()
    samples = scrape_shared(shared_one)
    assert samples[("proximity_http_requests_total", (*match, ("status", "200")))] == 6
    assert samples[SOCKETS] == 4
    shared_new.close()
    shared_one.close()


# Through the real entry point: python run.py --workers 2.


async def scrape(http: aiohttp.ClientSession, base: str) -> Samples:
    async with http.get(f"{base}/metrics", headers=bearer(ADMIN_TOKEN)) as resp:
        assert resp.status == 200
        return parse(await resp.text())


async def scrape_until(
    http: aiohttp.ClientSession, base: str, done: Callable[[Samples], bool], history: list[Samples]
) -> Samples:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        samples = await scrape(http, base)
        history.append(samples)
        if done(samples):
            return samples
        assert time.monotonic() < deadline, f"last scrape: {samples.get(STATS_401)=}, {samples.get(SOCKETS)=}"
        await asyncio.sleep(0.1)


def pids_by_request_id(log_path: Path) -> dict[str, int]:
    return {line["request_id"]: line["pid"] for line in read_log(log_path) if line["msg"] == "request"}


async def test_a_scrape_through_the_shared_port_reports_every_worker(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "server.log"
    env = env_for(settings, ADMIN_TOKEN=ADMIN_TOKEN, ACCESS_LOG="1", STATS_FLUSH_INTERVAL="3600")
    proc = start_run_py(port, env, log_path, "--workers", "2")
    base = f"http://127.0.0.1:{port}"
    history: list[Samples] = []
    try:
        await wait_until_live(base, proc)
        await wait_for_log(log_path, lambda line: line["msg"] == "listening", count=2, within=WAIT_SECONDS)
        # Fresh connections, so the kernel spreads the requests over both workers.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            # Requests until both workers have served some: GET /stats without a token (401).
            request_ids: list[str] = []
            deadline = time.monotonic() + WAIT_SECONDS
            while len(request_ids) < 20 or len(set(pids_by_request_id(log_path).values())) < 2:
                assert time.monotonic() < deadline, "the requests did not reach both workers"
                request_id = "stats-" + secrets.token_hex(6)
                async with http.get(f"{base}/stats", headers={"X-Request-ID": request_id}) as resp:
                    assert resp.status == 401
                request_ids.append(request_id)
            served = Counter(pids_by_request_id(log_path)[request_id] for request_id in request_ids)
            assert len(served) == 2 and max(served.values()) < len(request_ids)

            # One scrape, whichever worker answers it, counts every request; so do the next ones.
            await scrape_until(http, base, lambda s: s.get(STATS_401) == len(request_ids), history)
            for _ in range(6):
                samples = await scrape(http, base)
                history.append(samples)
                assert samples[STATS_401] == len(request_ids)
                assert samples[PROCESSES] == 2

            # WebSockets on both workers: the socket gauge is their sum.
            sockets: dict[str, aiohttp.ClientWebSocketResponse] = {}
            deadline = time.monotonic() + WAIT_SECONDS
            while len(sockets) < 6 or len({pids_by_request_id(log_path).get(r) for r in sockets} - {None}) < 2:
                assert time.monotonic() < deadline, "the sockets did not reach both workers"
                token = "mw_" + secrets.token_hex(6)
                async with http.post(f"{base}/session", json={"ble_token": token, "interests": ["devops"]}) as resp:
                    assert resp.status == 201
                    secret = (await resp.json())["session_id"]
                request_id = "ws-" + secrets.token_hex(6)
                sockets[request_id] = await http.ws_connect(
                    f"{base}/ws/{token}?session_id={secret}", headers={"X-Request-ID": request_id}
                )
            await scrape_until(http, base, lambda s: s.get(SOCKETS) == len(sockets), history)
            for request_id in list(sockets)[:2]:
                await sockets.pop(request_id).close()
            await scrape_until(http, base, lambda s: s.get(SOCKETS) == len(sockets), history)

            # A worker dies: its sockets leave the gauge, its requests stay in the counter.
            pids = pids_by_request_id(log_path)
            victim = pids[next(iter(sockets))]
            survivors = [r for r in sockets if pids[r] != victim]
            os.kill(victim, signal.SIGKILL)
            await scrape_until(http, base, lambda s: s.get(SOCKETS) == len(survivors), history)
            assert history[-1][STATS_401] == len(request_ids)
            assert history[-1][PROCESSES] in (1, 2)  # the survivor, and the replacement once it is up
            for ws in sockets.values():
                await ws.close()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, WAIT_SECONDS) == 0
    finally:
        stop_process(proc)
    # Scrapes answered by either worker never saw the request count go down.
    counts = [samples[STATS_401] for samples in history if STATS_401 in samples]
    assert counts == sorted(counts)
