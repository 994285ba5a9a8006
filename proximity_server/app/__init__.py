"""The aiohttp application: how a request is turned into a reply.

    factory.py      create_app(settings): the factory
    routes.py       the route table: every URL in one place
    state.py        typed application state keys (web.AppKey)
    lifecycle.py    the composition root: cleanup contexts that build and
                    wire every store, service and the realtime pieces
    middlewares.py  request id, access log, security headers, error envelope
    http.py         request parsing and JSON replies shared by handlers
    auth.py         authenticated_user(request): the access-token check
    openapi.py      GET /openapi.json: the description of every route
"""

from proximity_server.app.factory import create_app

__all__ = ["create_app"]
