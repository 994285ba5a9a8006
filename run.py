"""Start the server: ``python run.py [--host H] [--port P]``.

Settings come from the environment (see config/settings.py); the flags
override HOST and PORT. Without DATABASE_URL / REDIS_URL, an embedded
PostgreSQL and Redis are started under DATA_DIR (./.data) and stopped on exit.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys

import uvloop
from aiohttp import web

from config.settings import Settings, SettingsError
from proximity_server import create_app
from proximity_server.embedded import EmbeddedServices
from proximity_server.logs import configure_logging

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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
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
    limit = raise_open_file_limit()
    log.info("starting", extra={"host": settings.host, "port": settings.port, "open_file_limit": limit})
    try:
        web.run_app(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            backlog=LISTEN_BACKLOG,
            shutdown_timeout=settings.shutdown_grace_seconds,
            access_log=None,
            print=None,
            loop=uvloop.new_event_loop(),
        )
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
