"""The WebSocket wire format.

    codes.py     error codes and close codes
    codec.py     JSON (text) and msgpack (binary) codecs, subprotocol names
    messages.py  typed commands and events, the result envelope
    limits.py    what a decoded frame may hold; bad frames before a close
    bus.py       the envelope of payloads between processes (Redis pub/sub)

Nothing here does I/O or imports aiohttp.
"""
