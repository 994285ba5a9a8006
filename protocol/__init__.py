"""The WebSocket wire format.

    codes.py     error codes and close codes
    codec.py     JSON (text) and msgpack (binary) codecs, subprotocol names
    messages.py  typed commands and events, the result envelope

Nothing here does I/O or imports aiohttp.
"""
