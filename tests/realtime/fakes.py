"""A stand-in for a socket, for the units that only send frames to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocol.codec import JSON, Codec
from protocol.codes import CloseCode


@dataclass(eq=False)
class FakeConn:
    codec: Codec = JSON
    tag: str = ""
    channel: str = ""
    strikes: int = 0
    frames: list[bytes] = field(default_factory=list)
    closed: bool = False
    close_codes: list[int] = field(default_factory=list)
    queued: int = 0

    def send(self, frame: bytes) -> None:
        self.frames.append(frame)

    def send_message(self, message: dict[str, Any]) -> None:
        self.frames.append(self.codec.encode(message))

    def close_soon(self, code: int, *, drop_queued: bool = True) -> None:
        self.closed = True
        self.close_codes.append(code)

    def sent(self) -> list[Any]:
        return [self.codec.decode(frame) for frame in self.frames]

    async def flush(self) -> None:
        return None

    async def close(self, code: int = CloseCode.NORMAL) -> None:
        self.closed = True
