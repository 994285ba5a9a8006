"""proximity_server: an async, realtime-first server for proximity and chat.

    app.py          create_app(settings): the factory
    routes.py       the route table
    middlewares.py  request id + access log + security headers, error envelope
    lifecycle.py    cleanup contexts: Redis, PostgreSQL, pub/sub, flusher, sweeper
    keys.py         typed application state keys
    http.py         request parsing shared by handlers (JSON bodies, bearer tokens)
    errors.py       typed API errors
    hub.py          local WebSocket connections by channel, bounded send queues
    broker.py       the Redis pub/sub listener feeding the hub
    proximity.py    session / match / socket logic
    stats.py        admin statistics and the counter flusher
    taxonomy.py     interests -> categories (data/taxonomy.json)
    embedded.py     embedded PostgreSQL and Redis for a machine with neither
    logs.py         JSON log lines with the request id

Data flow of a match:

    phone --POST /match--> handlers.proximity --> proximity.ProximityService
        --> store.proximity (one Lua script: auth, intersect, dedupe, count, PUBLISH)
    Redis pub/sub --> broker.RedisBroker (every process) --> hub.Hub --> sockets
"""

from proximity_server.app import create_app

__all__ = ["create_app"]
