"""Durable events reach every socket of a user exactly once, in ``event_id``
order, with no gaps: events that overtake each other on the way are put back
in order, gaps are filled from the event log, a lost pub/sub connection is
caught up from the log, and a socket whose gap was pruned closes with 4009.

The first tests drive one ``EventStream`` against the real event log; the
last ones flood real server processes (``run.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis

from config.settings import Settings
from protocol.codes import CloseCode
from proximity_server.app import state as keys
from proximity_server.realtime.delivery import GAP_WAIT_SECONDS, EventStream, Message
from store.broker_redis import RedisBroker
from store.events import EventStore, append_event_in_transaction
from tests.auth_helpers import ACCOUNT_OVERRIDES
from tests.chat_helpers import Person, like, people, person
from tests.conftest import AppClient
from tests.delivery_helpers import Device, Server, kill_pubsub_clients_of, running_servers

SETTLE_SECONDS = GAP_WAIT_SECONDS * 4


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(**ACCOUNT_OVERRIDES)


class Recorder:
    """An ``EventStream`` over the real log of one user, recording what it does."""

    def __init__(self, events: EventStore, user_id: str) -> None:
        self.sent: list[int] = []
        self.closed: list[CloseCode] = []
        self.log_reads = 0

        async def read_log(after: int, limit: int) -> list[Message]:
            self.log_reads += 1
            return [e.to_wire() for e in await events.events_since(user_id, after, limit)]

        self.stream = EventStream(
            send=lambda message: self.sent.append(message["event_id"]),
            close=self.closed.append,
            read_log=read_log,
            read_newest=lambda: events.last_event_id(user_id),
        )

    def offer(self, event_id: int) -> None:
        """What the hub does: the stream sends it, or says the caller may."""
        if self.stream.offer({"event_id": event_id, "type": "message"}):
            self.sent.append(event_id)


async def append(client: AppClient, user_id: str, n: int) -> list[int]:
    """Append ``n`` events to the user's log (not published)."""
    ids = []
    async with client.app[keys.PG_POOL].acquire() as conn:
        for i in range(n):
            async with conn.transaction():
                ids.append((await append_event_in_transaction(conn, user_id, "message", {"n": i})).event_id)
    return ids


async def live_recorder(client: AppClient, backlog: int) -> tuple[Recorder, str]:
    who = await person(client)
    await append(client, who.user_id, backlog)
    recorder = Recorder(client.app[keys.EVENTS], who.user_id)
    replay = await recorder.stream.resume(0, 10_000)
    assert replay.replayed == backlog and recorder.sent == list(range(1, backlog + 1))
    return recorder, who.user_id


async def test_events_that_overtake_each_other_go_out_in_order(client: AppClient) -> None:
    recorder, user_id = await live_recorder(client, 3)
    await append(client, user_id, 3)  # 4, 5, 6
    reads = recorder.log_reads
    for event_id in (5, 6, 4, 5, 3):
        recorder.offer(event_id)
    assert recorder.sent == [1, 2, 3, 4, 5, 6]
    await asyncio.sleep(SETTLE_SECONDS)
    assert recorder.log_reads == reads  # the gap closed by itself: no query
    assert recorder.sent == [1, 2, 3, 4, 5, 6] and not recorder.closed


async def test_a_gap_is_filled_from_the_log(client: AppClient) -> None:
    recorder, user_id = await live_recorder(client, 2)
    await append(client, user_id, 4)  # 3..6; only 6 arrives, then 4 (late)
    recorder.offer(6)
    assert recorder.sent == [1, 2]  # held while the gap is open
    await asyncio.sleep(SETTLE_SECONDS)
    assert recorder.sent == [1, 2, 3, 4, 5, 6]
    recorder.offer(4)
    recorder.offer(5)
    assert recorder.sent == [1, 2, 3, 4, 5, 6] and not recorder.closed


async def test_events_before_resume_are_held_then_released_once(client: AppClient) -> None:
    who = await person(client)
    await append(client, who.user_id, 5)
    recorder = Recorder(client.app[keys.EVENTS], who.user_id)
    for event_id in (4, 2, 5):
        recorder.offer(event_id)
    assert recorder.sent == []
    replay = await recorder.stream.resume(1, 10_000)
    assert replay.replayed == 4 and recorder.sent == [2, 3, 4, 5]
    # "nothing to replay": what arrived since the socket opened, then live
    other = Recorder(client.app[keys.EVENTS], who.user_id)
    other.offer(5)
    other.offer(4)
    await other.stream.resume(None, 10_000)
    assert other.sent == [4, 5]
    await append(client, who.user_id, 1)
    other.offer(6)
    assert other.sent == [4, 5, 6]


async def test_a_gap_pruned_from_the_log_closes_with_resync(client: AppClient) -> None:
    recorder, user_id = await live_recorder(client, 2)
    await append(client, user_id, 3)  # 3, 4, 5
    await client.app[keys.EVENTS].prune(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    recorder.offer(5)
    await asyncio.sleep(SETTLE_SECONDS)
    assert recorder.closed == [CloseCode.RESYNC] and recorder.sent == [1, 2]
    recorder.offer(3)  # nothing goes out on a socket that is closing
    assert recorder.sent == [1, 2]


async def test_too_many_held_events_close_with_resync(client: AppClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("proximity_server.realtime.delivery.MAX_HELD_EVENTS", 10)
    recorder, _ = await live_recorder(client, 1)
    for event_id in range(3, 14):
        recorder.offer(event_id)
    assert recorder.closed == [CloseCode.RESYNC] and recorder.sent == [1]
    assert recorder.stream.held == {}


async def test_broker_tells_listeners_when_it_resubscribes(settings: Settings) -> None:
    assert settings.redis_url
    name = f"{settings.redis_prefix}broker"
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True, client_name=name)
    heard: list[str] = []
    broker = RedisBroker(client, f"{settings.redis_prefix}ev:control", lambda channel, raw: None)
    broker.add_resubscribe_listener(heard.append)
    task = asyncio.create_task(broker.run())
    channel = f"{settings.redis_prefix}ev:user:x"
    try:
        await broker.subscribe(channel)
        assert heard == []  # a first subscription is not a re-subscription
        assert await kill_pubsub_clients_of(client, name=name) == 1
        for _ in range(100):
            if heard:
                break
            await asyncio.sleep(0.02)
        assert heard == [channel] and broker.reconnects == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()


async def test_a_socket_catches_up_from_the_log_after_its_listener_reconnects(
    client: AppClient, settings: Settings
) -> None:
    who = await person(client)
    ws = await client.ws_connect("/ws", headers=who.auth)
    await ws.send_str(orjson.dumps({"type": "resume", "id": 1, "last_event_id": 0}).decode())
    assert orjson.loads((await ws.receive(timeout=5)).data)["result"]["replayed"] == 0
    await append(client, who.user_id, 2)  # committed, but its publish went unheard
    assert settings.redis_url
    admin = aioredis.Redis.from_url(settings.redis_url)
    try:
        assert await kill_pubsub_clients_of(admin, pids=[os.getpid()]) == 1  # this test's app only
    finally:
        await admin.aclose()
    got = [orjson.loads((await ws.receive(timeout=5)).data) for _ in range(2)]
    assert [(f["type"], f["event_id"]) for f in got] == [("message", 1), ("message", 2)]
    await ws.close()


# -- floods on real server processes ------------------------------------------------------

# TEST_FLOOD_MESSAGES shortens a run while working on this; the suite floods 20,000.
FLOOD_MESSAGES = int(os.environ.get("TEST_FLOOD_MESSAGES", "20000"))
SENDERS = 8
DELIVERY_WITHIN_SECONDS = 60.0
# The two servers alone spend ~43 s of CPU on 20,000 messages (~2 ms each:
# rate limit, one transaction, publish, three sockets to serve), so a flood
# takes ~100 s on 2 shared cores, more when other work runs beside it.
FLOOD_TIMEOUT_SECONDS = 600


@dataclass
class Flood:
    """One person with a device on each of two processes; ``SENDERS`` matches
    of theirs, half on each process, send ``FLOOD_MESSAGES`` between them."""

    servers: list[Server]
    http: aiohttp.ClientSession
    recipient: Person
    devices: list[Device]
    senders: list[tuple[Device, str]]  # a sender's socket, and its conversation with the recipient
    first_message_id: int
    sent: int = 0
    acked: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def last_event_id(self) -> int:
        return self.first_message_id + FLOOD_MESSAGES - 1

    async def run(self, *, at: dict[int, Callable[[], Awaitable[None]]] | None = None) -> None:
        """Send every message, each sender waiting for each acknowledgement;
        ``at``: run a step once that many messages were acknowledged."""
        steps = dict(at or {})
        per_sender = FLOOD_MESSAGES // len(self.senders)

        async def send_all(index: int, device: Device, conversation_id: str) -> None:
            for n in range(per_sender):
                reply = await device.command(
                    "send_message", conversation_id=conversation_id, client_id=f"s{index}-{n}", text=f"{index}/{n}"
                )
                assert reply["ok"], reply
                self.sent += 1
                self.acked.set()

        async def run_steps() -> None:
            for threshold in sorted(steps):
                while self.sent < threshold:
                    self.acked.clear()
                    await self.acked.wait()
                await steps[threshold]()

        await asyncio.gather(
            *(send_all(i, device, conversation) for i, (device, conversation) in enumerate(self.senders)),
            run_steps(),
        )

    async def received_exactly(self, device: Device, after: int = 0) -> None:
        """The device got every id after ``after`` up to the last, once each, in order."""
        await device.wait_for_id(self.last_event_id, DELIVERY_WITHIN_SECONDS)
        ids = device.event_ids
        assert device.closed_with is None, f"closed with {device.closed_with}"
        assert all(a < b for a, b in itertools.pairwise(ids)), "out of order or repeated"
        assert ids == list(range(after + 1, self.last_event_id + 1)), f"{len(ids)} ids, missing some"


def cpu_seconds(servers: list[Server]) -> float:
    """User + system CPU the server processes used so far (``/proc/PID/stat``)."""
    ticks = 0
    for server in servers:
        fields = Path(f"/proc/{server.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def flood_setup(client: AppClient, settings: Settings, tmp_path: Path) -> AsyncIterator[Flood]:
    recipient = await person(client)
    senders = await people(client, SENDERS)
    conversations = []
    for sender in senders:
        await like(client, sender, recipient)
        status, body = await like(client, recipient, sender)
        assert status == 200 and body["matched"]
        conversations.append(body["conversation_id"])
    async with (
        running_servers(settings, tmp_path, 2) as servers,
        aiohttp.ClientSession() as http,
    ):
        devices = [await Device.connect(http, server, recipient.token) for server in servers]
        for device in devices:
            reply = await device.command("resume", last_event_id=0)
            assert reply["result"]["replayed"] == SENDERS, reply  # the matches
        sockets = []
        for i, sender in enumerate(senders):
            device = await Device.connect(http, servers[i % 2], sender.token)
            assert (await device.command("resume", last_event_id=None))["ok"]
            sockets.append((device, conversations[i]))
        flood = Flood(servers, http, recipient, devices, sockets, first_message_id=SENDERS + 1)
        try:
            yield flood
        finally:
            for device in devices + [d for d, _ in sockets]:
                await device.close()


@pytest.mark.timeout(FLOOD_TIMEOUT_SECONDS)
async def test_a_flood_from_two_processes_arrives_once_in_order_on_both_devices(
    client: AppClient, settings: Settings, tmp_path: Path
) -> None:
    async with flood_setup(client, settings, tmp_path) as flood:
        late: list[tuple[Device, int]] = []

        async def resume_mid_flood() -> None:
            """Two more devices join mid-flood, resuming from an id seen and from the start."""
            for server, after in zip(flood.servers, (random.randint(1, flood.sent), 0), strict=True):
                device = await Device.connect(flood.http, server, flood.recipient.token)
                reply = await device.command("resume", last_event_id=after)
                assert reply["ok"] and not reply["result"]["truncated"], reply
                late.append((device, after))

        started, cpu = time.monotonic(), cpu_seconds(flood.servers)
        await flood.run(at={FLOOD_MESSAGES // 4: resume_mid_flood})
        elapsed, cpu = time.monotonic() - started, cpu_seconds(flood.servers) - cpu
        for device in flood.devices:
            await flood.received_exactly(device)
        for device, after in late:
            await flood.received_exactly(device, after)
            await device.close()
        rate = FLOOD_MESSAGES / elapsed
        print(f"\n{FLOOD_MESSAGES} messages in {elapsed:.1f} s ({rate:.0f}/s), servers' CPU {cpu:.1f} s")


@pytest.mark.timeout(FLOOD_TIMEOUT_SECONDS)
async def test_a_flood_arrives_once_in_order_while_pubsub_connections_are_killed(
    client: AppClient, settings: Settings, tmp_path: Path
) -> None:
    assert settings.redis_url
    admin = aioredis.Redis.from_url(settings.redis_url)
    kills: list[int] = []

    async def kill_listeners() -> None:
        pids = [server.proc.pid for server in flood.servers]
        kills.append(await kill_pubsub_clients_of(admin, pids=pids))

    try:
        async with flood_setup(client, settings, tmp_path) as flood:
            started = time.monotonic()
            await flood.run(at={FLOOD_MESSAGES // 3: kill_listeners, 2 * FLOOD_MESSAGES // 3: kill_listeners})
            sent_at = time.monotonic()
            for device in flood.devices:
                await flood.received_exactly(device)
            print(f"\nsent in {sent_at - started:.1f} s, all delivered {time.monotonic() - sent_at:.1f} s later")
    finally:
        await admin.aclose()
    assert kills == [2, 2]  # one listener per process, each time
