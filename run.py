"""Start the server: ``python run.py [--host H] [--port P] [--workers N|auto]``.

Settings come from the environment (see config/settings.py); the flags
override HOST and PORT. Without DATABASE_URL / REDIS_URL, an embedded
PostgreSQL and Redis are started under DATA_DIR (./.data) and stopped on exit.

With ``--workers``, this process supervises N worker processes sharing the
port (see proximity_server/supervisor.py); embedded services are then started
once here and handed to the workers through the environment. ``--worker-of``
and ``--worker-index`` are how the supervisor starts a worker.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys

import uvloop
from aiohttp import web

from config.settings import Settings, SettingsError
from proximity_server import create_app
from proximity_server.embedded import EmbeddedServices
from proximity_server.logs import configure_logging
from proximity_server.supervisor import Supervisor, watch_supervisor, worker_command, worker_count

log = logging.getLogger("proximity_server.run")

LISTEN_BACKLOG = 2048


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
    configure_logging(settings.log_level, worker=worker)
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
    log.info(
        "supervising", extra={"host": settings.host, "port": settings.port, "workers": workers, "pid": os.getpid()}
    )
    supervisor = Supervisor(
        workers,
        lambda index: worker_command(index, settings.host, settings.port),
        env,
        settings.shutdown_grace_seconds,
    )
    return supervisor.run()


def serve(settings: Settings, *, reuse_port: bool = False, supervisor_pid: int | None = None) -> None:
    """Serve in this process until SIGTERM/SIGINT (then close gracefully)."""
    limit = raise_open_file_limit()
    log.info("starting", extra={"host": settings.host, "port": settings.port, "open_file_limit": limit})
    if supervisor_pid is not None:
        watch_supervisor(supervisor_pid)
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        backlog=LISTEN_BACKLOG,
        shutdown_timeout=settings.shutdown_grace_seconds,
        access_log=None,
        print=None,
        reuse_port=reuse_port or None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    sys.exit(main())
