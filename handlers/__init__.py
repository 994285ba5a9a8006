"""Thin HTTP and WebSocket handlers, one module per resource.

    health.py         GET /livez, GET /health
    proximity.py      POST /session, POST /match, WS /ws/{ble_token}
    user_socket.py    WS /ws (the signed-in user's socket)
    accounts.py       /auth/register, /auth/login, /auth/refresh, /auth/logout(-all)
    profiles.py       GET /me, /me/profile, GET /profiles/{id}
    photos.py         /me/photos, GET /photos/{id}
    discover.py       GET /discover
    likes.py          /likes, /matches, /blocks, /reports
    conversations.py  /conversations and their messages
    stats.py          GET /stats
    metrics.py        GET /metrics
    openapi.py        GET /openapi.json

A handler parses and validates its input, calls the feature's logic in
``proximity_server.features`` (same module name), and shapes the reply. It
holds no SQL and no Redis.
"""
