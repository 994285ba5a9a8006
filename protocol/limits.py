"""What a decoded request may contain so that it can be stored.

PostgreSQL text cannot hold NUL characters and BIGINT stops at 2**63-1; a
value outside that must be refused as bad input at the edge (HTTP bodies and
WebSocket frames), not fail later as an internal error. Checked iteratively,
so deeply nested input costs no recursion.
"""

from __future__ import annotations

import math
from typing import Final

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
# Bad frames (undecodable, malformed, unknown command) a socket may send
# before it is closed with 1008; each gets an error reply.
BAD_FRAMES_BEFORE_CLOSE: Final = 5


def unstorable(value: object) -> str | None:
    """Why ``value`` (a decoded JSON/msgpack document) cannot be accepted, or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "text may not contain NUL characters"
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                return "integers must fit in 64 bits"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "numbers must be finite"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return None
