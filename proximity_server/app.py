"""The application factory."""

from __future__ import annotations

import aiohttp_cors
from aiohttp import web

from config.settings import Settings
from proximity_server import keys
from proximity_server.http import MAX_JSON_BODY_BYTES
from proximity_server.lifecycle import CLEANUP_CONTEXTS, close_sockets
from proximity_server.middlewares import error_envelope, make_request_context
from proximity_server.rate_limit import TrustedProxies
from proximity_server.routes import add_routes
from proximity_server.taxonomy import load_taxonomy
from store.keys import Keys


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[make_request_context(settings.access_log), error_envelope],
        client_max_size=MAX_JSON_BODY_BYTES,
    )
    app[keys.SETTINGS] = settings
    app[keys.TAXONOMY] = load_taxonomy()
    app[keys.REDIS_KEYS] = Keys(settings.redis_prefix)
    app[keys.TRUSTED_PROXIES] = TrustedProxies(settings.trusted_proxies)
    app.cleanup_ctx.extend(CLEANUP_CONTEXTS)
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
