"""Ordered, gap-free delivery of one user's durable events to one socket.

Durable events carry a per-user ``event_id`` that counts 1, 2, 3, … with no
gaps (``store/events.py``). They are published after COMMIT by whichever
coroutine or process wrote them, so they can reach a socket out of order (105
before 104), and a pub/sub connection that drops loses whatever was published
meanwhile. An ``EventStream`` turns that into exactly-once, in-order delivery:

* an event with the next id (``last_sent + 1``) goes out at once;
* one at or below ``last_sent`` is a repeat and is dropped;
* one past the next id is *held*, and the stream fills the gap: it waits up
  to ``GAP_WAIT_SECONDS`` for the missing events to arrive over pub/sub, then
  reads what is still missing from the event log, sends it in order, and
  releases the held events. One fill runs at a time; what arrives meanwhile
  is held (and de-duplicated by id).

Before the client has said where it stands (``resume``), every durable event
is held; going live either replays the log after the client's id
(:meth:`EventStream.resume`) or starts from the user's newest id
(:meth:`EventStream.go_live`). After the broker re-subscribes a channel (its
pub/sub connection dropped), :meth:`EventStream.catch_up` reads the log after
``last_sent``.

Memory stays bounded: at most ``MAX_HELD_EVENTS`` are held. A stream whose
gap cannot be filled (the log was pruned past it) or whose held buffer
overflows asks for its socket to be closed with ``4009 resync``: the client
reconnects and resumes from the last id it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from protocol.codes import CloseCode

log = logging.getLogger(__name__)

# How long a gap may stay open before the missing events are read from the log.
GAP_WAIT_SECONDS: Final = 0.075
# Most durable events one socket holds while a gap is open or before it resumes.
MAX_HELD_EVENTS: Final = 2_000
# Events read from the log per query.
LOG_PAGE: Final = 500

Message = dict[str, Any]
# The log: the user's events after an id, oldest first, at most ``limit``.
ReadLog = Callable[[int, int], Awaitable[list[Message]]]
# The user's newest event id (0 before the first).
ReadNewest = Callable[[], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class Replay:
    replayed: int
    truncated: bool


class EventStream:
    """Per-socket sequencing of durable events (see the module docstring)."""

    def __init__(
        self,
        *,
        send: Callable[[Message], None],
        close: Callable[[CloseCode], None],
        read_log: ReadLog,
        read_newest: ReadNewest,
    ) -> None:
        self._send = send
        self._close = close
        self._read_log = read_log
        self._read_newest = read_newest
        self.last_sent = 0
        self.live = False
        self.held: dict[int, Message] = {}
        self.failed = False
        self._lock = asyncio.Lock()  # one fill or replay at a time
        self._fill: asyncio.Task[None] | None = None
        self._gap_closed = asyncio.Event()

    # -- arrivals ------------------------------------------------------------------

    def offer(self, message: Message) -> bool:
        """A durable event arrived. True: the caller sends it now, as is.
        False: it was dropped, held, or already sent by the stream itself."""
        event_id: int = message["event_id"]
        if self.failed or event_id <= self.last_sent:
            return False
        if self.live and event_id == self.last_sent + 1:
            if not self.held:
                self.last_sent = event_id
                return True
            self._emit(message)
            self._release()
            return False
        if event_id in self.held:
            return False
        self.held[event_id] = message
        if len(self.held) > MAX_HELD_EVENTS:
            self._fail()
            return False
        if self.live and self._fill is None:
            self._schedule_fill()
        return False

    def _schedule_fill(self) -> None:
        self._gap_closed.clear()
        self._fill = asyncio.ensure_future(self._fill_gap())

    def _emit(self, message: Message) -> None:
        self.last_sent = message["event_id"]
        self._send(message)

    def _release(self) -> None:
        """Send the held events that follow ``last_sent`` with no gap; drop the repeats."""
        while self.held:
            lowest = min(self.held)
            if lowest > self.last_sent + 1:
                return
            message = self.held.pop(lowest)
            if lowest == self.last_sent + 1:
                self._emit(message)
        self._gap_closed.set()

    def _fail(self) -> None:
        self.failed = True
        self.held.clear()
        self._gap_closed.set()
        self._close(CloseCode.RESYNC)

    # -- filling from the log ------------------------------------------------------------

    async def _fill_gap(self) -> None:
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(GAP_WAIT_SECONDS):
                    await self._gap_closed.wait()
            async with self._lock:
                await self._read_gap()
        except Exception as exc:  # the log could not be read: the client resumes instead
            log.warning("could not fill a gap in a socket's events", extra={"error": repr(exc)})
            self._fail()
        finally:
            self._fill = None
            if self.held and self.live and not self.failed:  # a gap opened while this one closed
                self._schedule_fill()

    async def _read_gap(self) -> None:
        """Read from the log up to the lowest held event, until no gap is left."""
        while self.held and not self.failed:
            self._release()
            if not self.held:
                return
            before = self.last_sent
            want = min(LOG_PAGE, min(self.held) - before - 1)
            page = await self._read_log(before, want)
            if self._send_page(page) is None:
                return
            if len(page) < want and self.held and min(self.held) > self.last_sent + 1:
                self._fail()  # the log no longer holds what is missing
                return

    def _send_page(self, page: list[Message], *, skip_pruned: bool = False) -> int | None:
        """Send a page of the log (read after an id ``last_sent`` may have moved
        past meanwhile); how many went out, or None if the log no longer holds
        the next event (pruned) and the stream failed."""
        if page and page[0]["event_id"] > self.last_sent + 1:
            if not skip_pruned:
                self._fail()
                return None
            self.last_sent = max(self.last_sent, page[0]["event_id"] - 1)
        sent = 0
        for message in page:
            if message["event_id"] == self.last_sent + 1:
                self._emit(message)
                sent += 1
        self._release()
        return sent

    async def _replay(self, max_events: int | None, *, skip_pruned: bool = False) -> Replay:
        """Send the log after ``last_sent`` until it runs out (or ``max_events``).
        ``skip_pruned``: start at the oldest event kept, if the log was pruned."""
        replayed = 0
        first = True
        while not self.failed:
            page = await self._read_log(self.last_sent, LOG_PAGE)
            sent = self._send_page(page, skip_pruned=skip_pruned and first)
            if sent is None:
                break
            replayed += sent
            first = False
            if len(page) < LOG_PAGE:
                break
            if max_events is not None and replayed >= max_events:
                return Replay(replayed, truncated=True)
        return Replay(replayed, truncated=False)

    # -- going live, resuming, catching up ----------------------------------------------

    async def resume(self, after: int | None, max_events: int) -> Replay:
        """The client's ``resume``: replay the log after ``after`` (nothing for
        None), then deliver live. Never sends an id twice on one socket."""
        async with self._lock:
            if after is None:
                await self._start_from_newest()
                return Replay(0, truncated=False)
            self.last_sent = max(self.last_sent, after)
            self.live = True
            result = await self._replay(max_events, skip_pruned=True)
            if result.truncated:
                # Too much missed: the client reloads its lists; live from now on.
                await self._start_from_newest()
            return result

    async def go_live(self) -> None:
        """No ``resume`` came in time: deliver live from the user's newest event
        on, and what arrived since the socket opened."""
        async with self._lock:
            if not self.live:
                await self._start_from_newest()

    async def _start_from_newest(self) -> None:
        newest = await self._read_newest()
        if self.held:
            newest = min(newest, min(self.held) - 1)
        self.last_sent = max(self.last_sent, newest)
        self.live = True
        self._release()
        await self._read_gap()

    async def catch_up(self) -> None:
        """Events may have been published while nobody listened: read the log."""
        if not self.live or self.failed:
            return  # going live reads what it needs
        async with self._lock:
            try:
                await self._replay(None)
            except Exception as exc:
                log.warning("could not catch a socket up from the log", extra={"error": repr(exc)})
                self._fail()

    def stop(self) -> None:
        """The socket went away."""
        self.failed = True
        self.held.clear()
        if self._fill is not None:
            self._fill.cancel()
