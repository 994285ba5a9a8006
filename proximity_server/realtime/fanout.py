"""From a bus payload to frames on a channel's sockets.

The hub hands each ``Fanout`` the raw payload and the channel's sockets. The
payload is decoded once (``protocol.bus.to_message``) and encoded once per
wire format; ``decide``, if given, makes the per-socket decision (the user
socket's ordering of durable events, logouts), else every socket gets it,
control messages (a logout) excepted: those are never sent to a client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from protocol import bus
from protocol.codec import Codec
from proximity_server.realtime.hub import Connection
from store.redis_keys import loggable_channel

log = logging.getLogger(__name__)

# Whether a message goes out on a socket now (it may act on it instead, e.g.
# close the socket on a logout, or hold a durable event back).
Decide = Callable[[Connection, dict[str, Any]], bool]


def not_control(conn: Connection, message: dict[str, Any]) -> bool:
    return message.get("type") not in bus.CONTROL_KINDS


class Fanout:
    def __init__(self, decide: Decide = not_control) -> None:
        self._decide = decide

    def __call__(self, channel: str, raw: str, conns: tuple[Connection, ...]) -> int:
        message = bus.to_message(raw)
        if message is None:
            log.warning("unknown event dropped", extra={"channel": loggable_channel(channel)})
            return 0
        encoded: dict[Codec, bytes] = {}
        decide = self._decide
        sent = 0
        for conn in conns:
            if not decide(conn, message):
                continue
            frame = encoded.get(conn.codec)
            if frame is None:
                frame = encoded[conn.codec] = conn.codec.encode(message)
            conn.send(frame)
            sent += 1
        return sent
