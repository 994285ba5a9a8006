"""The application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Final

import aiohttp_cors
from aiohttp import hdrs, web

from config.settings import Settings
from proximity_server.app import state as keys
from proximity_server.app.http import MAX_JSON_BODY_BYTES
from proximity_server.app.lifecycle import CLEANUP_CONTEXTS, close_sockets
from proximity_server.app.middlewares import error_envelope, make_request_context
from proximity_server.app.routes import add_routes
from proximity_server.app.web_headers import apply_web_headers
from proximity_server.app.webapp import PACKAGE_WEB_ROOT, WebFiles
from proximity_server.features.rate_limit import TrustedProxies
from proximity_server.features.taxonomy import load_taxonomy
from proximity_server.runtime.metrics import PUBLISH_INTERVAL_SECONDS, multiprocess_dir
from store.redis_keys import Keys

log = logging.getLogger(__name__)


class Draining:
    """Set by the entry point when a graceful stop begins (see run.py): from
    then on every response says ``Connection: close``, so a client whose
    request was in flight does not send its next one on a connection that is
    about to close."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = False


DRAINING: Final = web.AppKey("draining", Draining)
SWITCHING_PROTOCOLS: Final = 101  # a WebSocket handshake: its Connection header must stay "Upgrade"


async def _close_connection_when_draining(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: one attribute test per response (~0.3 µs) while serving."""
    if request.app[DRAINING].active and response.status != SWITCHING_PROTOCOLS:
        response.force_close()  # the connection closes after this response ...
        response.headers[hdrs.CONNECTION] = "close"  # ... and the client is told (the header is already set)


async def shared_metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """With several workers (PROMETHEUS_MULTIPROC_DIR, set by the supervisor):
    copy this process's figures to the shared directory now, every
    ``PUBLISH_INTERVAL_SECONDS`` and a last time on the way out, so that the
    counts of this process stay in the sums after it is gone. Alone, nothing."""
    directory = multiprocess_dir()
    if directory is None:
        yield
        return
    shared = app[keys.METRICS].share(directory)
    shared.publish()

    async def publish_forever() -> None:
        while True:
            await asyncio.sleep(PUBLISH_INTERVAL_SECONDS)
            try:
                shared.publish()
            except Exception as exc:
                log.warning("publishing metrics failed", extra={"error": repr(exc)})

    task = asyncio.create_task(publish_forever(), name="metrics-publisher")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    try:
        shared.publish()
    finally:
        shared.close()


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[make_request_context(settings.access_log), error_envelope],
        client_max_size=MAX_JSON_BODY_BYTES,
        # Bodies are decoded in proximity_server/app/http.py, so that a coding that
        # does not decode is answered with the JSON error envelope.
        handler_args={"auto_decompress": False},
    )
    app[keys.SETTINGS] = settings
    app[keys.TAXONOMY] = load_taxonomy()
    app[keys.REDIS_KEYS] = Keys(settings.redis_prefix)
    app[keys.TRUSTED_PROXIES] = TrustedProxies(settings.trusted_proxies)
    app[DRAINING] = Draining()
    app[keys.WEB_FILES] = WebFiles(settings.web_root or PACKAGE_WEB_ROOT)
    app.on_response_prepare.append(_close_connection_when_draining)
    app.on_response_prepare.append(apply_web_headers)
    app.cleanup_ctx.extend(CLEANUP_CONTEXTS)
    app.cleanup_ctx.append(shared_metrics_ctx)  # after metrics_ctx, which makes app[keys.METRICS]
    app.on_shutdown.append(close_sockets)
    routes = add_routes(app)
    if settings.allowed_origins:
        cors = aiohttp_cors.setup(
            app,
            defaults={
                origin: aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
                    allow_credentials=True, expose_headers=("X-Request-ID",), allow_headers="*", max_age=600
                )
                for origin in settings.allowed_origins
            },
        )
        for route in routes:
            if route.resource is not None and not route.resource.canonical.startswith("/ws"):
                cors.add(route)
    return app
