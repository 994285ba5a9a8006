"""Wire codecs: JSON text frames (default) and msgpack binary frames.

A client picks one with the WebSocket subprotocol. Both carry the same
envelope, a map with a ``type`` key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgpack
import orjson

JSON_SUBPROTOCOL: Final = "proximity.json"
MSGPACK_SUBPROTOCOL: Final = "proximity.msgpack"
SUBPROTOCOLS: Final = (MSGPACK_SUBPROTOCOL, JSON_SUBPROTOCOL)


class DecodeError(ValueError):
    """A frame is not valid for its codec."""


@dataclass(frozen=True, slots=True)
class Codec:
    name: str
    binary: bool

    def encode(self, message: dict[str, Any]) -> bytes:
        if self.binary:
            return msgpack.packb(message, use_bin_type=True)  # type: ignore[no-any-return]
        return orjson.dumps(message)

    def decode(self, data: bytes | str) -> object:
        try:
            if self.binary:
                if isinstance(data, str):
                    raise DecodeError("expected a binary frame")
                value = msgpack.unpackb(data, raw=False, strict_map_key=True)
            else:
                value = orjson.loads(data)
        except DecodeError:
            raise
        except (ValueError, TypeError, msgpack.StackError) as exc:
            raise DecodeError(f"not valid {self.name}: {exc}") from None
        return value


JSON: Final = Codec("json", binary=False)
MSGPACK: Final = Codec("msgpack", binary=True)


def codec_for(subprotocol: str | None) -> Codec:
    return MSGPACK if subprotocol == MSGPACK_SUBPROTOCOL else JSON
