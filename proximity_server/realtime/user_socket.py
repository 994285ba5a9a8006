"""The signed-in user's socket (``WS /ws``): one per device, every event.

A socket authenticates with an access token (before the upgrade, or with an
``auth`` frame within ``AUTH_DEADLINE_SECONDS``), joins the user's channel,
and then carries: durable events from the user's event log (``message``,
``match``, ``unmatch``, ``read``, each with a per-user ``event_id``),
ephemeral ``typing`` and ``presence`` signals, and proximity ``nudge``s of
sessions created with the user's token.

Commands (each gets exactly one ``result``): ``auth``, ``send_message``,
``typing``, ``read``, ``resume``, ``refresh``, ``ping``; they are read and
answered by ``commands.Commands``, as on the proximity socket. Until the
socket is authenticated only ``auth`` (and ``ping``) are served, by
``AuthPhase``; tokens are checked by ``AccountService.verify_access``.

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from protocol import bus
from protocol.codes import CloseCode, ErrorCode
from protocol.messages import Command, result_error
from proximity_server.features.accounts import AccountService
from proximity_server.features.conversations import ConversationService
from proximity_server.features.errors import BadRequest, NotFound, Unauthorized
from proximity_server.features.tokens import ACCESS_TOKEN_TTL_SECONDS, AccessClaims
from proximity_server.realtime.commands import Commands, CommandSpec, execute
from proximity_server.realtime.delivery import EventStream, Message
from proximity_server.realtime.fanout import Fanout
from proximity_server.realtime.hub import Connection, Hub
from store.conversations import ConversationStore
from store.events import EventStore
from store.likes import LikeStore
from store.presence import PresenceStore
from store.pubsub import Publisher
from store.redis_keys import Keys

log = logging.getLogger(__name__)

AUTH_DEADLINE_SECONDS: Final = 10.0
RESUME_GRACE_SECONDS: Final = 2.0
RESUME_MAX_EVENTS: Final = 10_000
AUTH: Final = "auth"


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


class Session(NamedTuple):
    """What a command of an authenticated socket runs with."""

    conn: Connection
    state: UserSocket


# Makes an authenticated socket the user's (``Realtime.open``).
OpenSocket = Callable[[Connection, AccessClaims], Awaitable[None]]
Spawn = Callable[[Awaitable[None]], None]


class AuthPhase:
    """A socket upgraded without a credential: it must send ``auth`` within
    ``AUTH_DEADLINE_SECONDS``, and may send nothing else (but ``ping``).
    A refused first ``auth`` closes the socket with 4401."""

    def __init__(self, accounts: AccountService, open_socket: OpenSocket, spawn: Spawn) -> None:
        self._accounts = accounts
        self._open = open_socket
        self._spawn = spawn
        self._waiting: dict[Connection, asyncio.TimerHandle] = {}
        self._auth: CommandSpec[Connection] = CommandSpec(
            self._run_auth, strings=("access_token",), close_on_refusal=CloseCode.AUTH_EXPIRED
        )

    async def verify(self, token: str | None) -> AccessClaims:
        return await self._accounts.verify_access(token)

    def wait(self, conn: Connection) -> None:
        """Start the socket's deadline."""
        loop = asyncio.get_running_loop()
        self._waiting[conn] = loop.call_later(AUTH_DEADLINE_SECONDS, self._deadline, conn)

    def done(self, conn: Connection) -> None:
        """The socket authenticated, or went away: no deadline any more."""
        timer = self._waiting.pop(conn, None)
        if timer is not None:
            timer.cancel()

    def _deadline(self, conn: Connection) -> None:
        if self._waiting.pop(conn, None) is not None:
            conn.close_soon(CloseCode.AUTH_EXPIRED)

    def on_command(self, conn: Connection, command: Command) -> None:
        if command.type != AUTH:
            conn.send_message(result_error(command.id, ErrorCode.UNAUTHORIZED, "authenticate first"))
            return
        self._spawn(execute(conn, conn, command, self._auth))

    async def _run_auth(self, conn: Connection, command: Command) -> dict[str, Any]:
        claims = await self.verify(command.fields["access_token"])
        await self._open(conn, claims)
        return {"user_id": claims.user_id}


class Realtime:
    def __init__(
        self,
        *,
        hub: Hub,
        keys: Keys,
        accounts: AccountService,
        conversations: ConversationService,
        members: ConversationStore,
        likes: LikeStore,
        events: EventStore,
        presence: PresenceStore,
        publisher: Publisher,
    ) -> None:
        self._hub = hub
        self._keys = keys
        self._conversations = conversations
        self._members = members
        self._likes = likes
        self._events = events
        self._presence = presence
        self._publisher = publisher
        self._sockets: dict[Connection, UserSocket] = {}
        self._local: dict[str, int] = {}  # user id -> open sockets on this process
        self._tasks: set[asyncio.Task[None]] = set()
        # The hub routes the user channels' payloads here (see lifecycle).
        self.fanout = Fanout(self.decide)
        self._commands: Commands[Session] = Commands(
            {
                AUTH: CommandSpec(self._already_authenticated),
                "refresh": CommandSpec(self._refresh, strings=("access_token",)),
                "resume": CommandSpec(self._resume),
                "send_message": CommandSpec(
                    self._send_message, strings=("conversation_id",), required=("client_id", "text")
                ),
                "read": CommandSpec(self._read, strings=("conversation_id",), required=("up_to",)),
                "typing": CommandSpec(self._typing, strings=("conversation_id",)),
            }
        )
        self.auth = AuthPhase(accounts, self.open, self._spawn)

    def local_users(self) -> list[str]:
        """The users holding a socket on this process (for daily active users)."""
        return list(self._local)

    # -- authentication ----------------------------------------------------------

    async def open(self, conn: Connection, claims: AccessClaims) -> None:
        """Make the socket the user's: subscribe, presence, token expiry."""
        self.auth.done(conn)
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

    def closed(self, conn: Connection) -> None:
        """A socket went away (the hub tells us about every one)."""
        self.auth.done(conn)
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
        partners = await self._likes.match_partners(user_id)
        if not partners:
            return
        seen_at = time.time() if last_seen_s is None else last_seen_s
        last_seen = None if online else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seen_at))
        payload = bus.presence({"type": "presence", "user_id": user_id, "online": online, "last_seen": last_seen})
        await self._publisher.publish_many([(self._keys.user_channel(partner), payload) for partner in partners])

    async def refresh_presence(self) -> None:
        """Keep this process's claims alive, and announce the users of a
        process that died (their claims ran out without a release)."""
        await self._presence.refresh(list(self._local))
        for gone in await self._presence.reap():
            assert gone.last_seen_ms is not None
            await self._announce(gone.user_id, online=False, last_seen_s=gone.last_seen_ms / 1000)

    # -- delivery ----------------------------------------------------------------

    def decide(self, conn: Connection, message: dict[str, Any]) -> bool:
        """Per-socket delivery decisions for events on a user channel."""
        state = self._sockets.get(conn)
        if state is None:
            return message.get("type") not in bus.CONTROL_KINDS
        if message.get("type") == bus.BAN:
            if state.issued_at_ms < message["before_ms"]:
                conn.close_soon(CloseCode.BANNED)
            return False
        if message.get("type") == bus.LOGOUT:
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

    async def _resume(self, session: Session, command: Command) -> dict[str, Any]:
        state = session.state
        last_event_id = command.fields.get("last_event_id")
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
        command = self._commands.read(conn, data)
        if command is None:
            return  # answered already (ping, or a bad frame)
        state = self._sockets.get(conn)
        if state is None:
            self.auth.on_command(conn, command)
            return
        self._spawn(self._run(conn, command, state))

    async def _run(self, conn: Connection, command: Command, state: UserSocket) -> None:
        if not state.ready.is_set():
            await state.ready.wait()
        await self._commands.execute(conn, Session(conn, state), command)

    async def _already_authenticated(self, session: Session, command: Command) -> None:
        raise BadRequest("already authenticated; use 'refresh' to renew")

    async def _refresh(self, session: Session, command: Command) -> dict[str, Any]:
        conn, state = session
        claims = await self.auth.verify(command.fields["access_token"])
        if claims.user_id != state.user_id:
            raise Unauthorized("that token belongs to another user")
        state.issued_at_ms = int(claims.issued_at * 1000)
        self._arm_expiry(conn, state, claims)
        return {"expires_in": int(claims.issued_at + ACCESS_TOKEN_TTL_SECONDS - time.time())}

    async def _send_message(self, session: Session, command: Command) -> Any:
        fields = command.fields
        sent = await self._conversations.send(session.state.user_id, fields["conversation_id"], fields)
        return sent.message

    async def _read(self, session: Session, command: Command) -> Any:
        fields = command.fields
        return await self._conversations.mark_read(session.state.user_id, fields["conversation_id"], fields)

    async def _typing(self, session: Session, command: Command) -> None:
        user_id = session.state.user_id
        conversation_id = command.fields["conversation_id"]
        other = await self._members.other_member(conversation_id, user_id)
        if other is None:
            raise NotFound("no such conversation")
        signal = {"type": "typing", "conversation_id": conversation_id, "user_id": user_id}
        await self._publisher.publish(self._keys.user_channel(other), bus.typing(signal))

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

