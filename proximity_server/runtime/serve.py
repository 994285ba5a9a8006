"""Serving one process, or supervising several: what ``python run.py`` runs.

Settings come from the environment (see config/settings.py); the flags
override HOST and PORT. Without DATABASE_URL / REDIS_URL, an embedded
PostgreSQL and Redis are started under DATA_DIR (./.data) and stopped on exit.

With ``--workers``, this process supervises N worker processes sharing the
port (see supervisor.py); embedded services are then started
once here and handed to the workers through the environment. ``--worker-of``
and ``--worker-index`` are how the supervisor starts a worker.

SIGTERM (or SIGINT) stops a server process gracefully, within
SHUTDOWN_GRACE_SECONDS (``drain``):

1. the listening socket is closed: new connections are refused (with
   ``--workers``, every worker closes its own);
2. idle keep-alive connections are closed; WebSockets get 1001 (on_shutdown);
3. requests in flight, including bodies still being uploaded, run to the end,
   and their responses say ``Connection: close``;
4. whatever still runs when the grace period is nearly over (it leaves
   ``SHUTDOWN_RESERVE_SECONDS``, at most half of it, for the last steps) is
   cut; then the cleanup contexts unwind: the final counter flush, the pools.

A second signal cuts the wait short. Should the last steps hang, a watchdog
thread ends the process (exit status 1) once the grace period is over: the
counters it could not flush stay in Redis for the next start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import resource
import signal
import sys
import threading
from collections.abc import Iterable

import uvloop
from aiohttp import web

from config.settings import Settings, SettingsError
from proximity_server import create_app
from proximity_server.app.factory import DRAINING
from proximity_server.runtime.embedded import EmbeddedServices
from proximity_server.runtime.logs import configure_logging
from proximity_server.runtime.metrics import MULTIPROC_DIR_ENV
from proximity_server.runtime.supervisor import (
    Supervisor,
    shared_metrics_dir,
    watch_supervisor,
    worker_command,
    worker_count,
)

log = logging.getLogger("proximity_server.run")

LISTEN_BACKLOG = 2048
KEEPALIVE_TIMEOUT_SECONDS = 75.0
# Of the grace period, what the last steps get (at most half of it): cutting
# requests still running, the final counter flush, closing the pools.
SHUTDOWN_RESERVE_SECONDS = 1.0
# However short the grace period, the last steps get this long before the watchdog ends the process.
SHUTDOWN_MIN_SECONDS = 1.0
DRAIN_POLL_SECONDS = 0.02
WATCHDOG_EXIT_STATUS = 1
# Hosts that mean "every interface": the banner shows a loopback address instead.
ANY_HOSTS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 (compared against, not bound)
ADMIN_PREFIX = "/admin"


def where_to_go(host: str, port: int, routes: Iterable[str]) -> dict[str, str]:
    """The URLs to open: the web app, the admin console (when it is routed)
    and the API reference."""
    shown = "127.0.0.1" if host in ANY_HOSTS else host
    if ":" in shown:
        shown = f"[{shown}]"
    base = f"http://{shown}:{port}"
    urls = {"web_app": f"{base}/"}
    if any(path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/") for path in routes):
        urls["admin_console"] = f"{base}{ADMIN_PREFIX}/"
    urls["api_reference"] = f"{base}/docs"
    return urls


def route_paths(app: web.Application) -> set[str]:
    return {route.resource.canonical for route in app.router.routes() if route.resource is not None}


def announce(host: str, port: int, routes: Iterable[str]) -> None:
    urls = where_to_go(host, port, routes)
    names = {"web_app": "web app", "admin_console": "admin console", "api_reference": "API reference"}
    message = "ready: " + ", ".join(f"{names[key]} {url}" for key, url in urls.items())
    log.info(message, extra=urls)


def raise_open_file_limit() -> int:
    """Allow as many sockets as the hard limit permits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="proximity_server: proximity nudges and chat over WebSockets")
    parser.add_argument("--host", help="address to listen on (env HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (env PORT, default 8080)")
    parser.add_argument(
        "--workers",
        metavar="N",
        help="run N server processes sharing the port (0 or 'auto': one per core); default: this process alone",
    )
    parser.add_argument("--worker-of", type=int, metavar="PID", help=argparse.SUPPRESS)
    parser.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.workers is not None:
        try:
            args.workers = worker_count(args.workers)
        except ValueError as exc:
            parser.error(str(exc))
    if args.workers is not None and args.worker_of is not None:
        parser.error("--workers and --worker-of exclude each other")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    worker = args.worker_index if args.worker_of is not None else None
    configure_logging(settings.log_level, worker=worker, fmt=settings.log_format)
    if worker is not None and (not settings.database_url or not settings.redis_url):
        print("configuration error: a worker needs DATABASE_URL and REDIS_URL from its supervisor", file=sys.stderr)
        return 2
    overrides: dict[str, object] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    embedded: EmbeddedServices | None = None
    if not settings.database_url or not settings.redis_url:
        embedded = EmbeddedServices(settings.data_dir)
        embedded.start(postgres=not settings.database_url, redis=not settings.redis_url)
        if not settings.database_url:
            overrides["database_url"] = embedded.database_url
        if not settings.redis_url:
            overrides["redis_url"] = embedded.redis_url
        log.info("using embedded services", extra={"data_dir": str(embedded.data_dir)})
    settings = settings.with_overrides(**overrides)
    try:
        if args.workers is not None:
            return supervise(settings, args.workers)
        serve(settings, reuse_port=args.worker_of is not None, supervisor_pid=args.worker_of)
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def supervise(settings: Settings, workers: int) -> int:
    """Run ``workers`` copies of this server on one port until SIGTERM/SIGINT."""
    env = dict(os.environ)
    # Embedded services were started here, once: the workers connect to them.
    env["DATABASE_URL"] = settings.database_url or ""
    env["REDIS_URL"] = settings.redis_url or ""
    for name in ("DATABASE_URL_FILE", "REDIS_URL_FILE"):
        env.pop(name, None)
    with shared_metrics_dir(os.environ.get(MULTIPROC_DIR_ENV)) as metrics_dir:
        # Every worker copies its figures there; a scrape reports them all.
        env[MULTIPROC_DIR_ENV] = str(metrics_dir)
        log.info(
            "supervising",
            extra={
                "host": settings.host,
                "port": settings.port,
                "workers": workers,
                "pid": os.getpid(),
                "metrics_dir": str(metrics_dir),
            },
        )
        announce(settings.host, settings.port, route_paths(create_app(settings)))
        supervisor = Supervisor(
            workers,
            lambda index: worker_command(index, settings.host, settings.port),
            env,
            settings.shutdown_grace_seconds,
            metrics_dir=metrics_dir,
        )
        return supervisor.run()


def serve(settings: Settings, *, reuse_port: bool = False, supervisor_pid: int | None = None) -> None:
    """Serve in this process until SIGTERM/SIGINT, then stop gracefully (see the module docstring)."""
    limit = raise_open_file_limit()
    log.info("starting", extra={"host": settings.host, "port": settings.port, "open_file_limit": limit})
    if supervisor_pid is not None:
        watch_supervisor(supervisor_pid)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    stop = StopSignals(loop)
    try:
        loop.run_until_complete(
            serve_until_stopped(
                create_app(settings), settings, stop, reuse_port=reuse_port, announce_urls=supervisor_pid is None
            )
        )
    finally:
        try:
            _cancel_remaining_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            stop.remove()
            loop.close()
            if stop.watchdog is not None:
                stop.watchdog.cancel()


class StopSignals:
    """SIGTERM and SIGINT: the first starts a graceful stop (and the exit
    watchdog), a second cuts the wait for requests in flight short."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.requested = asyncio.Event()
        self.hurry = asyncio.Event()
        self.watchdog: threading.Timer | None = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._received, sig)

    def _received(self, sig: signal.Signals) -> None:
        if self.requested.is_set():
            log.warning("second signal: cutting requests in flight now", extra={"signal": sig.name})
            self.hurry.set()
            return
        log.info("stop requested", extra={"signal": sig.name})
        self.requested.set()

    def start_watchdog(self, seconds: float) -> None:
        """End the process ``seconds`` from now, whatever it is doing."""

        def overrun() -> None:
            log.error("shutdown overran the grace period, exiting now", extra={"after_seconds": seconds})
            logging.shutdown()
            os._exit(WATCHDOG_EXIT_STATUS)

        self.watchdog = threading.Timer(seconds, overrun)
        self.watchdog.daemon = True
        self.watchdog.start()

    def remove(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                self._loop.remove_signal_handler(sig)


class DrainingRunner(web.AppRunner):
    """aiohttp's runner, except that its cleanup does not run ``on_shutdown``
    again when ``drain`` already has (when the stop began)."""

    __slots__ = ("shutdown_done",)

    def __init__(self, app: web.Application, **kwargs: object) -> None:
        super().__init__(app, **kwargs)  # type: ignore[arg-type]
        self.shutdown_done = False

    async def shutdown(self) -> None:
        if not self.shutdown_done:
            self.shutdown_done = True
            await super().shutdown()


def shutdown_budget(grace: float) -> tuple[float, float, float]:
    """(seconds requests in flight get, seconds the cut of what is left may take,
    seconds until the watchdog ends the process), from SIGTERM."""
    grace = max(0.0, grace)
    drain = grace - min(SHUTDOWN_RESERVE_SECONDS, grace / 2)
    exit_after = max(grace, SHUTDOWN_MIN_SECONDS)
    # aiohttp waits this long twice for a request it cuts (then cancels it, then gives up on it).
    cut = max(0.05, (exit_after - drain) / 4)
    return drain, cut, exit_after


async def serve_until_stopped(
    app: web.Application,
    settings: Settings,
    stop: StopSignals,
    *,
    reuse_port: bool = False,
    announce_urls: bool = False,
) -> None:
    drain_seconds, cut_seconds, exit_after = shutdown_budget(settings.shutdown_grace_seconds)
    runner = DrainingRunner(
        app,
        handle_signals=False,
        access_log=None,
        keepalive_timeout=KEEPALIVE_TIMEOUT_SECONDS,
        # What a request still running after the drain gets once it is cancelled.
        shutdown_timeout=cut_seconds,
    )
    await runner.setup()
    try:
        if not stop.requested.is_set():  # a stop during start-up: no need to listen
            site = web.TCPSite(
                runner, settings.host, settings.port, backlog=LISTEN_BACKLOG, reuse_port=reuse_port or None
            )
            await site.start()
            log.info("listening", extra={"host": settings.host, "port": settings.port})
            if announce_urls:
                announce(settings.host, settings.port, route_paths(app))
            await stop.requested.wait()
        stop.start_watchdog(exit_after)
        await drain(runner, stop, drain_seconds)
    finally:
        await runner.cleanup()
    log.info("stopped")


async def drain(runner: DrainingRunner, stop: StopSignals, seconds: float) -> None:
    """Stop listening, close idle connections and WebSockets, and wait up to
    ``seconds`` for the requests in flight (the runner's cleanup cuts the rest)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    for site in list(runner.sites):
        await site.stop()  # closes the listening socket: new connections are refused
    app = runner.app
    app[DRAINING].active = True
    server = runner.server
    assert server is not None
    in_flight = _close_idle(server.connections)
    log.info("stopped listening, draining", extra={"requests_in_flight": in_flight, "drain_seconds": seconds})
    runner.shutdown_done = True
    closing = asyncio.create_task(app.shutdown())  # on_shutdown: WebSockets are closed with 1001
    hurry = asyncio.create_task(stop.hurry.wait())
    try:
        while True:
            in_flight = _close_idle(server.connections)
            remaining = deadline - loop.time()
            if (not in_flight and closing.done()) or remaining <= 0 or hurry.done():
                break
            await asyncio.wait([hurry], timeout=min(DRAIN_POLL_SECONDS, remaining))
    finally:
        hurry.cancel()
        closing.cancel()  # WebSockets whose peers have not answered the close frame are dropped
        await asyncio.wait([closing, hurry])
    if not closing.cancelled() and closing.exception() is not None:
        log.error("closing WebSockets failed", exc_info=closing.exception())
    if in_flight:
        log.warning("grace period over, cutting requests in flight", extra={"requests_in_flight": in_flight})
    else:
        log.info("requests in flight finished")


def _close_idle(connections: list[web.RequestHandler]) -> int:
    """Close the connections that have no request running; return how many do.

    ``_request_in_progress`` is aiohttp's own flag (3.14, pinned): set while a
    request's handler runs, including while its body is still being received.
    ``close()`` would not do for an idle one (it only stops it from reading),
    and would make a busy one drop the rest of its request body."""
    busy = 0
    for conn in connections:
        if getattr(conn, "_request_in_progress", True):
            busy += 1
        else:
            conn.force_close()
    return busy


def _cancel_remaining_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


