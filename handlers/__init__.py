"""Thin HTTP and WebSocket handlers, one module per resource.

    health.py     GET /livez, GET /health
    proximity.py  POST /session, POST /match, WS /ws/{ble_token}
    stats.py      GET /stats

A handler parses and validates its input, calls the logic in
``proximity_server``, and shapes the reply. It holds no SQL and no Redis.
"""
