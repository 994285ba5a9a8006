"""The signed-in user's socket (``WS /ws``): one per device, every event.

A socket authenticates with an access token (before the upgrade, or with an
``auth`` frame within ``AUTH_DEADLINE_SECONDS``), joins the user's channel,
and then carries: durable events from the user's event log (``message``,
``match``, ``unmatch``, ``read``, each with a per-user ``event_id``),
ephemeral ``typing`` and ``presence`` signals, and proximity ``nudge``s of
sessions created with the user's token.

Commands (each gets exactly one ``result``): ``auth``, ``send_message``,
``typing``, ``read``, ``resume``, ``refresh``, ``ping``.

Resume without gaps or duplicates: a fresh socket holds durable events back
until the client sends ``resume {last_event_id}`` (or ``null`` for "nothing to
replay"), or ``RESUME_GRACE_SECONDS`` pass. Resume replays the log after that
id, then releases what arrived meanwhile, skipping anything already sent.
From then on durable events go out in ``event_id`` order, each once, with no
gaps: events that overtake each other on the way are put back in order, and a
gap is filled from the log (``delivery.EventStream``); after the broker
re-subscribes the user's channel the socket catches up from the log. A socket
that cannot be kept gap-free is closed with ``4009 resync``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg
import orjson

from protocol.codec import DecodeError
from protocol.codes import CloseCode, ErrorCode
from protocol.messages import Command, FrameError, error_frame, parse_command, result_error, result_ok
from proximity_server.app.middlewares import UNAVAILABLE_ERRORS
from proximity_server.features.accounts import AccountService
from proximity_server.features.conversations import ConversationService
from proximity_server.features.errors import ApiError, BadRequest, NotFound, Unauthorized
from proximity_server.features.tokens import ACCESS_TOKEN_TTL_SECONDS, AccessClaims, AccessTokens, InvalidToken
from proximity_server.realtime.delivery import EventStream, Message
from proximity_server.realtime.hub import BAN_EVENT, LOGOUT_EVENT, Connection, Hub
from store import realtime as realtime_store
from store.events import EventStore
from store.presence import PresenceStore
from store.pubsub import Publisher
from store.redis_keys import Keys

log = logging.getLogger(__name__)

AUTH_DEADLINE_SECONDS: Final = 10.0
RESUME_GRACE_SECONDS: Final = 2.0
RESUME_MAX_EVENTS: Final = 10_000
BAD_FRAMES_BEFORE_CLOSE: Final = 5
USER_COMMANDS: Final = frozenset({"auth", "send_message", "typing", "read", "resume", "refresh", "ping"})


@dataclass(slots=True)
class UserSocket:
    user_id: str
    issued_at_ms: int
    # Durable events, in order (held back until the socket has resumed).
    stream: EventStream
    expiry: asyncio.TimerHandle | None = None
    grace: asyncio.TimerHandle | None = None
    # Set once the socket is subscribed and its presence claimed: commands wait
    # for it, so that a reply never overtakes the socket's own set-up.
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class Realtime:
    def __init__(
        self,
        *,
        hub: Hub,
        keys: Keys,
        tokens: AccessTokens,
        accounts: AccountService,
        conversations: ConversationService,
        events: EventStore,
        presence: PresenceStore,
        pool: asyncpg.Pool,
        publisher: Publisher,
    ) -> None:
        self._hub = hub
        self._keys = keys
        self._tokens = tokens
        self._accounts = accounts
        self._conversations = conversations
        self._events = events
        self._presence = presence
        self._pool = pool
        self._publisher = publisher
        self._sockets: dict[Connection, UserSocket] = {}
        self._unauthenticated: dict[Connection, asyncio.TimerHandle] = {}
        self._local: dict[str, int] = {}  # user id -> open sockets on this process
        self._tasks: set[asyncio.Task[None]] = set()
        hub.gate = self.gate
        hub.close_listeners.append(self._closed)

    def local_users(self) -> list[str]:
        """The users holding a socket on this process (for daily active users)."""
        return list(self._local)

    # -- authentication ----------------------------------------------------------

    async def verify(self, token: str | None) -> AccessClaims:
        if not token:
            raise Unauthorized("send an access token")
        try:
            claims = self._tokens.verify(token)
        except InvalidToken:
            raise Unauthorized("invalid or expired access token") from None
        await self._accounts.authorize(claims)
        return claims

    def await_auth(self, conn: Connection) -> None:
        """An upgraded socket with no credential yet: it has a deadline."""
        loop = asyncio.get_running_loop()
        self._unauthenticated[conn] = loop.call_later(AUTH_DEADLINE_SECONDS, self._auth_deadline, conn)

    def _auth_deadline(self, conn: Connection) -> None:
        if self._unauthenticated.pop(conn, None) is not None:
            conn.close_soon(CloseCode.AUTH_EXPIRED)

    async def open(self, conn: Connection, claims: AccessClaims) -> None:
        """Make the socket the user's: subscribe, presence, token expiry."""
        timer = self._unauthenticated.pop(conn, None)
        if timer is not None:
            timer.cancel()
        loop = asyncio.get_running_loop()
        state = UserSocket(claims.user_id, int(claims.issued_at * 1000), self._stream(conn, claims.user_id))
        self._sockets[conn] = state
        self._arm_expiry(conn, state, claims)
        state.grace = loop.call_later(RESUME_GRACE_SECONDS, self._go_live, conn, state)
        try:
            await self._hub.join(self._keys.user_channel(claims.user_id), conn)
            count = self._local.get(claims.user_id, 0)
            self._local[claims.user_id] = count + 1
            if count == 0 and await self._presence.claim(claims.user_id) == 1:
                self._spawn(self._announce(claims.user_id, online=True))
        finally:
            state.ready.set()

    def _stream(self, conn: Connection, user_id: str) -> EventStream:
        async def read_log(after: int, limit: int) -> list[Message]:
            return [event.to_wire() for event in await self._events.events_since(user_id, after, limit)]

        return EventStream(
            send=conn.send_message,
            close=conn.close_soon,
            read_log=read_log,
            read_newest=lambda: self._events.last_event_id(user_id),
        )

    def _arm_expiry(self, conn: Connection, state: UserSocket, claims: AccessClaims) -> None:
        if state.expiry is not None:
            state.expiry.cancel()
        delay = claims.issued_at + ACCESS_TOKEN_TTL_SECONDS - time.time()
        state.expiry = asyncio.get_running_loop().call_later(max(delay, 0), conn.close_soon, CloseCode.AUTH_EXPIRED)

    def _closed(self, conn: Connection) -> None:
        timer = self._unauthenticated.pop(conn, None)
        if timer is not None:
            timer.cancel()
        state = self._sockets.pop(conn, None)
        if state is None:
            return
        for handle in (state.expiry, state.grace):
            if handle is not None:
                handle.cancel()
        state.stream.stop()
        left = self._local.get(state.user_id, 0) - 1
        if left > 0:
            self._local[state.user_id] = left
            return
        self._local.pop(state.user_id, None)
        self._spawn(self._release(state.user_id))

    async def _release(self, user_id: str) -> None:
        if await self._presence.release(user_id) == 0:
            await self._announce(user_id, online=False)

    async def _announce(self, user_id: str, *, online: bool, last_seen_s: float | None = None) -> None:
        """Tell the user's matches that they came online or went offline."""
        partners = await realtime_store.match_partners(self._pool, user_id)
        if not partners:
            return
        seen_at = time.time() if last_seen_s is None else last_seen_s
        last_seen = None if online else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seen_at))
        payload = b"presence|" + orjson.dumps(
            {"type": "presence", "user_id": user_id, "online": online, "last_seen": last_seen}
        )
        await self._publisher.publish_many([(self._keys.user_channel(partner), payload) for partner in partners])

    async def refresh_presence(self) -> None:
        """Keep this process's claims alive, and announce the users of a
        process that died (their claims ran out without a release)."""
        await self._presence.refresh(list(self._local))
        for gone in await self._presence.reap():
            assert gone.last_seen_ms is not None
            await self._announce(gone.user_id, online=False, last_seen_s=gone.last_seen_ms / 1000)

    # -- delivery ----------------------------------------------------------------

    def gate(self, conn: Connection, message: dict[str, Any]) -> bool:
        """Per-socket delivery decisions for events on a user channel."""
        state = self._sockets.get(conn)
        if state is None:
            return message.get("type") not in (LOGOUT_EVENT, BAN_EVENT)
        if message.get("type") == BAN_EVENT:
            if state.issued_at_ms < message["before_ms"]:
                conn.close_soon(CloseCode.BANNED)
            return False
        if message.get("type") == LOGOUT_EVENT:
            if state.issued_at_ms < message["before_ms"]:
                conn.close_soon(CloseCode.AUTH_EXPIRED)
            return False
        event_id = message.get("event_id")
        if not isinstance(event_id, int) or isinstance(event_id, bool):
            return True  # ephemeral: typing, presence, nudge
        return state.stream.offer(message)

    def resubscribed(self, channel: str) -> None:
        """The broker re-subscribed a channel after losing it: events published
        meanwhile were not heard, so its sockets catch up from the log."""
        for conn in self._hub.connections(channel):
            state = self._sockets.get(conn)
            if state is not None:
                self._spawn(state.stream.catch_up())

    def _go_live(self, conn: Connection, state: UserSocket) -> None:
        """No resume in time: deliver what arrived since the socket opened, then live."""
        state.grace = None
        self._spawn(state.stream.go_live())

    async def _resume(self, conn: Connection, state: UserSocket, last_event_id: object) -> dict[str, Any]:
        if last_event_id is not None and (
            not isinstance(last_event_id, int) or isinstance(last_event_id, bool) or last_event_id < 0
        ):
            raise BadRequest("'last_event_id' must be a non-negative integer or null", code=ErrorCode.INVALID_FIELD)
        if state.grace is not None:
            state.grace.cancel()
            state.grace = None
        replay = await state.stream.resume(last_event_id, RESUME_MAX_EVENTS)
        return {"replayed": replay.replayed, "last_event_id": state.stream.last_sent, "truncated": replay.truncated}

    # -- commands ----------------------------------------------------------------

    def on_frame(self, conn: Connection, data: str | bytes) -> None:
        try:
            command = parse_command(conn.codec.decode(data), USER_COMMANDS)
        except DecodeError as exc:
            conn.send_message(error_frame(ErrorCode.BAD_FRAME, str(exc)))
            self._strike(conn)
            return
        except FrameError as exc:
            if exc.command_id is None:
                conn.send_message(error_frame(exc.code, exc.message))
            else:
                conn.send_message(result_error(exc.command_id, exc.code, exc.message))
            self._strike(conn)
            return
        if command.type == "ping":
            conn.send_message(result_ok(command.id, {"pong": True}))
            return
        state = self._sockets.get(conn)
        if state is None and command.type != "auth":
            conn.send_message(result_error(command.id, ErrorCode.UNAUTHORIZED, "authenticate first"))
            return
        self._spawn(self._run(conn, command, state))

    def _strike(self, conn: Connection) -> None:
        conn.strikes += 1  # type: ignore[attr-defined]
        if conn.strikes >= BAD_FRAMES_BEFORE_CLOSE:  # type: ignore[attr-defined]
            conn.close_soon(CloseCode.POLICY_VIOLATION, drop_queued=False)

    async def _run(self, conn: Connection, command: Command, state: UserSocket | None) -> None:
        if state is not None and not state.ready.is_set():
            await state.ready.wait()
        try:
            result = await self._dispatch(conn, command, state)
        except ApiError as exc:
            conn.send_message(result_error(command.id, exc.code, exc.message))
            if command.type == "auth" and state is None:  # a failed first auth ends the socket
                conn.close_soon(CloseCode.AUTH_EXPIRED, drop_queued=False)
        except UNAVAILABLE_ERRORS:
            conn.send_message(result_error(command.id, ErrorCode.UNAVAILABLE, "a backing service is unavailable"))
        except Exception:
            log.exception("command failed", extra={"command": command.type})
            conn.send_message(result_error(command.id, ErrorCode.INTERNAL, "internal error"))
        else:
            conn.send_message(result_ok(command.id, result))

    async def _dispatch(self, conn: Connection, command: Command, state: UserSocket | None) -> Any:
        fields = command.fields
        if command.type == "auth":
            if state is not None:
                raise BadRequest("already authenticated; use 'refresh' to renew")
            claims = await self.verify(_str_field(fields, "access_token"))
            await self.open(conn, claims)
            return {"user_id": claims.user_id}
        assert state is not None
        if command.type == "refresh":
            claims = await self.verify(_str_field(fields, "access_token"))
            if claims.user_id != state.user_id:
                raise Unauthorized("that token belongs to another user")
            state.issued_at_ms = int(claims.issued_at * 1000)
            self._arm_expiry(conn, state, claims)
            return {"expires_in": int(claims.issued_at + ACCESS_TOKEN_TTL_SECONDS - time.time())}
        if command.type == "resume":
            return await self._resume(conn, state, fields.get("last_event_id"))
        conversation_id = _str_field(fields, "conversation_id")
        if command.type == "send_message":
            _require(fields, "client_id", "text")
            sent = await self._conversations.send(state.user_id, conversation_id, fields)
            return sent.message
        if command.type == "read":
            _require(fields, "up_to")
            return await self._conversations.mark_read(state.user_id, conversation_id, fields)
        if command.type == "typing":
            other = await realtime_store.other_member(self._pool, conversation_id, state.user_id)
            if other is None:
                raise NotFound("no such conversation")
            signal = {"type": "typing", "conversation_id": conversation_id, "user_id": state.user_id}
            await self._publisher.publish(self._keys.user_channel(other), b"typing|" + orjson.dumps(signal))
            return None
        raise BadRequest(f"unknown command {command.type!r}")  # unreachable: parse_command checked it

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background socket work failed: %r", task.exception())

    async def close(self) -> None:
        for task in tuple(self._tasks):
            task.cancel()
        for task in tuple(self._tasks):
            with contextlib.suppress(BaseException):
                await task


def _str_field(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"'{name}' must be a non-empty string", code=ErrorCode.INVALID_FIELD)
    return value


def _require(fields: dict[str, Any], *names: str) -> None:
    missing = [n for n in names if n not in fields]
    if missing:
        raise BadRequest(f"missing field(s): {', '.join(missing)}", code=ErrorCode.INVALID_FIELD)
