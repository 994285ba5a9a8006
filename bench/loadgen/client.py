"""The client side of the API the scenarios drive: BLE sessions (register many at once),
authenticated WebSockets with a reader task each (JSON or msgpack frames)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import secrets
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson

from bench.loadgen.common import BenchError

MSGPACK_SUBPROTOCOL = "proximity.msgpack"

#: Interests that map to a taxonomy category on the server (the category is in brackets);
#: random 2-4 of them per session give a realistic mix of matching/non-matching pairs.
INTERESTS: tuple[str, ...] = (
    "devops",  # tech
    "coding",  # tech
    "hardstyle",  # music
    "jazz",  # music
    "philosophy",  # philosophy
    "running",  # fitness
    "yoga",  # fitness
    "hiking",  # outdoors
    "chess",  # gaming
    "photography",  # photography
    "cooking",  # food
    "painting",  # art
    "poetry",  # books
    "football",  # sports
    "astronomy",  # science
    "climbing",  # outdoors
)

#: Interests every nudge/idle pair shares, so a match is guaranteed.
SHARED_INTERESTS: tuple[str, ...] = ("devops", "hardstyle")

JSON_HEADERS = {"Content-Type": "application/json"}

HTTP_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)


@dataclasses.dataclass(slots=True)
class Session:
    token: str
    session_id: str
    interests: list[str]


class TokenFactory:
    """Fresh, unique BLE tokens (8-64 chars of [A-Za-z0-9_-])."""

    def __init__(self, tag: str) -> None:
        self.prefix = f"{tag}{secrets.token_hex(4)}"
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"{self.prefix}-{self.n:07x}"


def random_interests(rng: random.Random, k_min: int = 2, k_max: int = 4) -> list[str]:
    return rng.sample(INTERESTS, rng.randint(k_min, min(k_max, len(INTERESTS))))


def bearer(session_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {session_id}", "Content-Type": "application/json"}


async def register(http: aiohttp.ClientSession, token: str, interests: list[str]) -> Session:
    body = orjson.dumps({"ble_token": token, "interests": interests})
    async with http.post("/session", data=body, headers=JSON_HEADERS) as resp:
        raw = await resp.read()
        if resp.status != 201:
            raise BenchError(f"POST /session {token}: HTTP {resp.status} {raw[:200]!r}")
    data = orjson.loads(raw)
    return Session(token, str(data["session_id"]), interests)


async def register_many(
    base_url: str,
    specs: Sequence[tuple[str, list[str]]],
    concurrency: int = 64,
    batch: int = 1000,
) -> list[Session]:
    """Register sessions in batches with bounded concurrency (one retry per token)."""
    out: list[Session] = []
    sem = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=HTTP_TIMEOUT) as http:

        async def one(token: str, interests: list[str]) -> Session:
            async with sem:
                for attempt in range(2):
                    try:
                        return await register(http, token, interests)
                    except (aiohttp.ClientError, TimeoutError):
                        if attempt:
                            raise
                        await asyncio.sleep(0.2)
                raise AssertionError("unreachable")

        for start in range(0, len(specs), batch):
            chunk = specs[start : start + batch]
            out += await asyncio.gather(*(one(t, i) for t, i in chunk))
    return out


class WsPeer:
    """One open WebSocket plus a reader task that timestamps every frame on arrival."""

    def __init__(self, session: Session, ws: aiohttp.ClientWebSocketResponse, use_msgpack: bool) -> None:
        self.session = session
        self.ws = ws
        self.use_msgpack = use_msgpack
        self.queue: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()
        self.closed = False
        self.frames = 0
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for msg in self.ws:  # autoping answers server pings while we iterate
                t = time.perf_counter_ns()
                self.frames += 1
                if msg.type == aiohttp.WSMsgType.TEXT:
                    data = orjson.loads(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    data = _msgpack_loads(msg.data) if self.use_msgpack else orjson.loads(msg.data)
                else:
                    continue
                if isinstance(data, dict):
                    self.queue.put_nowait((t, data))
        except (aiohttp.ClientError, TimeoutError, ValueError):
            pass
        finally:
            self.closed = True

    async def wait_nudge(self, timeout_s: float) -> tuple[int, dict[str, Any]] | None:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                t, data = await asyncio.wait_for(self.queue.get(), remaining)
            except TimeoutError:
                return None
            if data.get("type") == "nudge":
                return t, data

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)
        self.reader.cancel()
        with contextlib.suppress(BaseException):
            await self.reader


def _msgpack_loads(raw: bytes) -> Any:
    import msgpack

    return msgpack.unpackb(raw, raw=False)


async def open_ws(http: aiohttp.ClientSession, session: Session, use_msgpack: bool) -> WsPeer:
    ws = await http.ws_connect(
        f"/ws/{session.token}",
        params={"session_id": session.session_id},
        protocols=(MSGPACK_SUBPROTOCOL,) if use_msgpack else (),
        autoping=True,
        heartbeat=None,
    )
    if use_msgpack and ws.protocol != MSGPACK_SUBPROTOCOL:
        await ws.close()
        raise BenchError(f"server did not accept subprotocol {MSGPACK_SUBPROTOCOL} (got {ws.protocol!r})")
    return WsPeer(session, ws, use_msgpack)


async def open_many(
    http: aiohttp.ClientSession,
    sessions: Sequence[Session],
    concurrency: int,
    use_msgpack: bool,
) -> tuple[list[WsPeer], Counter[str]]:
    sem = asyncio.Semaphore(concurrency)
    errors: Counter[str] = Counter()

    async def one(s: Session) -> WsPeer | None:
        async with sem:
            for attempt in range(2):
                try:
                    return await open_ws(http, s, use_msgpack)
                except aiohttp.WSServerHandshakeError as exc:
                    errors[f"handshake_{exc.status}"] += 1
                    return None
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    if attempt:
                        errors[type(exc).__name__] += 1
                        return None
                    await asyncio.sleep(0.2)
            return None

    peers = await asyncio.gather(*(one(s) for s in sessions))
    return [p for p in peers if p is not None], errors


async def close_many(peers: Sequence[WsPeer], concurrency: int = 500) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(p: WsPeer) -> None:
        async with sem:
            await p.close()

    await asyncio.gather(*(one(p) for p in peers))
