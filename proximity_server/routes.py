"""The route table: every URL the server answers, in one place."""

from __future__ import annotations

from aiohttp import web

from handlers import accounts, health, proximity, stats


def add_routes(app: web.Application) -> list[web.AbstractRoute]:
    return app.router.add_routes(
        [
            web.get("/livez", health.livez, allow_head=False),
            web.get("/health", health.health, allow_head=False),
            web.post("/session", proximity.create_session),
            web.post("/match", proximity.match),
            web.get("/ws/{ble_token}", proximity.proximity_socket, allow_head=False),
            web.get("/stats", stats.stats, allow_head=False),
            web.post("/auth/register", accounts.register),
            web.post("/auth/login", accounts.login),
            web.post("/auth/refresh", accounts.refresh),
            web.post("/auth/logout", accounts.logout),
            web.post("/auth/logout-all", accounts.logout_all),
        ]
    )
