"""The server on a real three-primary Redis Cluster (REDIS_CLUSTER_URL).

Every test here runs with ``settings`` pointing at the cluster: the
cluster-specific tests below, and the proximity, chat and presence suites,
re-collected from their modules so that the same assertions hold on both
kinds of Redis. Skipped when no redis-server 7 is installed.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.crc import key_slot

from config.settings import Settings
from proximity_server.app import state as keys
from store.redis_keys import Keys
from tests.api import (
    test_conversations,
    test_hidden_nudges,
    test_likes,
    test_match,
    test_rotation,
    test_session,
    test_stats,
)
from tests.auth_helpers import ACCOUNT_OVERRIDES
from tests.conftest import AppClient, MakeClient, namespaced_settings
from tests.faults import test_realtime_kill
from tests.helpers import attempt_match, bearer, new_token, open_session
from tests.realtime import test_realtime, test_ws
from tests.redis_cluster import LocalRedisCluster, running_cluster
from tests.runtime import test_metrics
from tests.servers import env_for, free_port, start_run_py, stop_process, wait_until_live
from tests.store import test_presence

SUITES = (
    test_session,
    test_match,
    test_rotation,
    test_ws,
    test_hidden_nudges,
    test_stats,
    test_likes,
    test_conversations,
    test_metrics,
    test_realtime,
    test_realtime_kill,
    test_presence,
)
for _suite in SUITES:
    for _name in dir(_suite):
        if _name.startswith("test_"):
            globals()[f"{_name}__on_cluster"] = getattr(_suite, _name)


# What the suites' own ``settings`` fixtures add (they do not apply here).
CLUSTER_OVERRIDES: dict[str, object] = {**ACCOUNT_OVERRIDES, "rate_limit_messages_per_minute": 1000}
MODULE_OVERRIDES: dict[str, dict[str, object]] = {
    test_realtime_kill.__name__: {"ws_heartbeat_seconds": test_realtime_kill.HEARTBEAT_SECONDS},
}


@pytest.fixture
async def settings(
    service_urls: tuple[str, str], redis_cluster_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[Settings]:
    extra = MODULE_OVERRIDES.get(request.function.__module__, {})
    async for value in namespaced_settings(service_urls[0], redis_cluster_url, cluster=True):
        yield value.with_overrides(**CLUSTER_OVERRIDES, **extra)


async def owner(client: aioredis.RedisCluster, key: str) -> str:
    """The node that owns ``key``, asked with a fresh client (closed after)."""
    try:
        await client.initialize()
        node = client.get_node_from_key(key)
        assert node is not None
        return str(node.name)
    finally:
        await client.aclose()


async def node_of(settings: Settings, key: str) -> str:
    return await owner(aioredis.RedisCluster.from_url(settings.redis_url or ""), key)


async def tokens_on_two_nodes(settings: Settings) -> tuple[str, str]:
    k = Keys(settings.redis_prefix)
    first = new_token()
    first_node = await node_of(settings, k.session(first))
    while True:
        second = new_token()
        if await node_of(settings, k.session(second)) != first_node:
            return first, second


async def node_client(settings: Settings, name: str) -> aioredis.Redis:
    host, port = name.rsplit(":", 1)
    return aioredis.Redis(host=host, port=int(port), decode_responses=True)


def test_keys_that_a_script_touches_together_share_a_slot() -> None:
    k = Keys("px:")
    assert key_slot(k.session("tok_a").encode()) == key_slot(k.token_channel("tok_a").encode())
    stats = {k.active_sessions, k.pending_counters, k.inflight_counters, k.counter_batches}
    assert len({key_slot(key.encode()) for key in stats}) == 1
    user = "4f1c9c3e-0000-4000-8000-000000000001"
    from store.redis_keys import presence_shard

    assert key_slot(k.presence(user).encode()) == key_slot(k.presence_deadlines(presence_shard(user)).encode())


async def test_a_match_across_two_nodes_nudges_both_once_and_counts_once(
    make_client: MakeClient, settings: Settings
) -> None:
    one, two = await make_client(), await make_client()
    a_token, b_token = await tokens_on_two_nodes(settings)
    a, secret_a = await open_session(one, ["devops"], token=a_token)
    b, secret_b = await open_session(two, ["coding", "hiking"], token=b_token)
    ws_a = await two.ws_connect(f"/ws/{a}", headers=bearer(secret_a))
    ws_b = await one.ws_connect(f"/ws/{b}", headers=bearer(secret_b))
    # Both phones report each other at the same moment, on different instances.
    first, second = await asyncio.gather(attempt_match(one, a, secret_a, b), attempt_match(two, b, secret_b, a))
    assert first["match"] is second["match"] is True
    assert [first["nudge_sent"], second["nudge_sent"]].count(True) >= 1
    for ws in (ws_a, ws_b):
        assert (await ws.receive_json(timeout=3))["shared_interests"] == ["tech"]
    for ws in (ws_a, ws_b):
        with pytest.raises(asyncio.TimeoutError):
            await ws.receive_json(timeout=0.3)  # each side is nudged once
    assert (await attempt_match(one, a, secret_a, b))["nudge_sent"] is False
    await one.app[keys.FLUSHER].flush_once()
    stats = await (await one.get("/stats", headers={"Authorization": f"Bearer {settings.admin_token}"})).json()
    assert stats["total_matches_today"] == 1
    assert stats["total_sessions_today"] == 2
    assert stats["active_sessions_now"] == 2
    await ws_a.close()
    await ws_b.close()


async def test_a_wrong_secret_is_refused_on_a_cluster(client: AppClient, settings: Settings) -> None:
    a_token, b_token = await tokens_on_two_nodes(settings)
    a, _ = await open_session(client, ["devops"], token=a_token)
    b, secret_b = await open_session(client, ["devops"], token=b_token)
    resp = await client.post("/match", json={"own_token": a, "detected_token": b}, headers=bearer(secret_b))
    assert resp.status == 401


async def test_events_use_sharded_pub_sub_on_the_owning_node(client: AppClient, settings: Settings) -> None:
    token, secret = await open_session(client, ["devops"])
    ws = await client.ws_connect(f"/ws/{token}", headers=bearer(secret))
    channel = Keys(settings.redis_prefix).token_channel(token)
    owner = await node_client(settings, await node_of(settings, channel))
    try:
        shard_subscribers = await owner.execute_command("PUBSUB", "SHARDNUMSUB", channel)  # type: ignore[no-untyped-call]
        assert shard_subscribers[1] == 1
        classic: Any = await owner.execute_command("PUBSUB", "NUMSUB", channel)  # type: ignore[no-untyped-call]
        assert classic[1] == 0
    finally:
        await owner.aclose()
    await ws.close()


async def test_a_dropped_subscriber_connection_reconnects_and_delivers(client: AppClient, settings: Settings) -> None:
    a, secret_a = await open_session(client, ["devops"])
    b, secret_b = await open_session(client, ["devops"])
    ws = await client.ws_connect(f"/ws/{a}", headers=bearer(secret_a))
    channel = Keys(settings.redis_prefix).token_channel(a)
    owner = await node_client(settings, await node_of(settings, channel))
    try:
        assert await owner.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1  # type: ignore[no-untyped-call]
        # The listener notices, reconnects and subscribes again.
        await wait_for(lambda: shard_subscribers(owner, channel), "the channel to be subscribed again", within=5.0)
    finally:
        await owner.aclose()
    await attempt_match(client, b, secret_b, a)
    assert (await ws.receive_json(timeout=3))["type"] == "nudge"
    await ws.close()


async def test_a_rotation_whose_alias_step_fails_leaves_the_session_where_it_was(
    client: AppClient, settings: Settings
) -> None:
    a_token, new = await tokens_on_two_nodes(settings)
    a, secret_a = await open_session(client, ["devops"], token=a_token)
    b, secret_b = await open_session(client, ["sre"])
    store: Any = client.app[keys.PROXIMITY]._store  # fault injection: the alias step fails
    store._rotate_alias = store._cluster.register_script("return redis.error_reply('injected failure')")
    resp = await client.post("/session/rotate", json={"own_token": a, "new_token": new}, headers=bearer(secret_a))
    assert resp.status == 500
    k = Keys(settings.redis_prefix)
    assert not await client.app[keys.REDIS].exists(k.session(new))  # the copy went again
    assert (await attempt_match(client, b, secret_b, a))["nudge_sent"] is True
    # the new token is free for anyone
    assert (await client.post("/session", json={"ble_token": new, "interests": ["sre"]})).status == 201


@pytest.fixture
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    """A cluster of this test's own, since the test stops one of its nodes."""
    with running_cluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


async def test_a_primary_going_down_fails_fast_and_everything_recovers(
    service_urls: tuple[str, str], own_cluster: LocalRedisCluster, tmp_path: Path
) -> None:
    async for settings in namespaced_settings(service_urls[0], own_cluster.url, cluster=True):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_run_py(port, env_for(settings, ACCESS_LOG="0"), tmp_path / "server.log")
        try:
            await wait_until_live(base, proc)
            async with aiohttp.ClientSession(base) as http:
                await check_outage_and_recovery(http, settings, own_cluster)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 20) == 0
        finally:
            stop_process(proc)


async def register(http: aiohttp.ClientSession, token: str) -> str:
    async with http.post("/session", json={"ble_token": token, "interests": ["devops"]}) as resp:
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["session_id"])


async def check_outage_and_recovery(
    http: aiohttp.ClientSession, settings: Settings, cluster: LocalRedisCluster
) -> None:
    k = Keys(settings.redis_prefix)
    a, b = new_token(), new_token()
    secret_a, secret_b = await register(http, a), await register(http, b)
    async with http.get("/health") as resp:
        assert resp.status == 200
    victim = cluster.ports.index(int((await node_of(settings, k.session(a))).rsplit(":", 1)[1]))
    cluster.stop_node(victim)
    try:
        started = time.monotonic()
        async with http.post("/match", json={"own_token": b, "detected_token": a}, headers=bearer(secret_b)) as resp:
            assert resp.status == 503, await resp.text()
            assert (await resp.json())["error"]["code"] == "unavailable"
        assert time.monotonic() - started < 10  # an answer, not a hang
        async with http.get("/health") as resp:
            assert resp.status == 503
            assert (await resp.json())["checks"]["redis"] == "down"
    finally:
        await asyncio.to_thread(cluster.restart_node, victim)
    await wait_for(lambda: healthy(http), "the server to be healthy again", within=10.0)
    # The node came back empty (tests keep no Redis data on disk): register
    # again, and match. The hot path and pub/sub recovered without a restart.
    a, b = new_token(), new_token()
    secret_a, secret_b = await register(http, a), await register(http, b)
    async with http.ws_connect(f"/ws/{a}", headers=bearer(secret_a)) as ws:
        async with http.post("/match", json={"own_token": b, "detected_token": a}, headers=bearer(secret_b)) as resp:
            assert resp.status == 200
            assert (await resp.json())["nudge_sent"] is True
        assert (await ws.receive_json(timeout=3))["type"] == "nudge"


async def test_a_session_write_cut_halfway_leaves_the_token_free(
    service_urls: tuple[str, str], own_cluster: LocalRedisCluster, tmp_path: Path
) -> None:
    """Step 2 of a cluster session write (the {stats} slot) fails: the phone
    got a 503, not its secret, so the session made by step 1 must not lock
    the token until it expires."""
    async for settings in namespaced_settings(service_urls[0], own_cluster.url, cluster=True):
        k = Keys(settings.redis_prefix)
        stats_node = await node_of(settings, k.active_sessions)
        token = new_token()
        while await node_of(settings, k.session(token)) == stats_node:
            token = new_token()
        port = free_port()
        proc = start_run_py(port, env_for(settings, ACCESS_LOG="0"), tmp_path / "server.log")
        try:
            await wait_until_live(f"http://127.0.0.1:{port}", proc)
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
                victim = own_cluster.ports.index(int(stats_node.rsplit(":", 1)[1]))
                own_cluster.stop_node(victim)
                try:
                    async with http.post("/session", json={"ble_token": token, "interests": ["devops"]}) as resp:
                        assert resp.status == 503, await resp.text()
                finally:
                    await asyncio.to_thread(own_cluster.restart_node, victim)
                status = await wait_for(partial(session_status, http, token), "Redis to answer again", within=10.0)
                assert status == 201  # not 409: the half-made session was removed
        finally:
            stop_process(proc)


@pytest.fixture
def replicated_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    """Three primaries, each with a replica that takes over when it dies."""
    with running_cluster(tmp_path_factory.mktemp("replicated"), replicas=1) as cluster:
        yield cluster


async def test_a_replica_takes_over_and_the_server_follows(
    service_urls: tuple[str, str], replicated_cluster: LocalRedisCluster, tmp_path: Path
) -> None:
    """A primary dies for good; its replica is promoted. Without a restart the
    server matches on the promoted node and its socket's channel moves there."""
    async for settings in namespaced_settings(service_urls[0], replicated_cluster.url, cluster=True):
        port = free_port()
        proc = start_run_py(port, env_for(settings, ACCESS_LOG="0"), tmp_path / "server.log")
        try:
            await wait_until_live(f"http://127.0.0.1:{port}", proc)
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
                await check_failover(http, settings, replicated_cluster)
        finally:
            stop_process(proc)
            # Back as a replica of its successor, so the clean-up can reach the cluster through it.
            await asyncio.to_thread(replicated_cluster.restart_node, 0)


async def check_failover(http: aiohttp.ClientSession, settings: Settings, cluster: LocalRedisCluster) -> None:
    k = Keys(settings.redis_prefix)
    old = f"127.0.0.1:{cluster.ports[0]}"  # the node the server was told about: the hardest one to lose
    a, b = new_token(), new_token()
    while await node_of(settings, k.session(a)) != old:
        a = new_token()
    secret_a, secret_b = await register(http, a), await register(http, b)
    async with http.ws_connect(f"/ws/{a}", headers=bearer(secret_a)) as ws:
        await asyncio.sleep(0.2)  # replication is asynchronous: let the replica catch up
        cluster.stop_node(cluster.ports.index(int(old.rsplit(":", 1)[1])))
        new = await wait_for(lambda: promoted_owner(cluster, k.session(a), old), "a promoted replica")
        # The server's subscriber connection to the dead node failed; it
        # re-reads the slots and subscribes on the promoted node.
        owner = await node_client(settings, new)
        try:
            await wait_for(lambda: shard_subscribers(owner, k.token_channel(a)), "the channel to move")
        finally:
            await owner.aclose()
        body = await wait_for(lambda: match_answer(http, b, secret_b, a), "/match to answer")
        assert body["match"] is True and body["nudge_sent"] is True
        assert (await ws.receive_json(timeout=3))["type"] == "nudge"


async def wait_for(check: Any, what: str, within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def promoted_owner(cluster: LocalRedisCluster, key: str, old: str) -> str | None:
    """The node that owns ``key`` once it is not ``old``, asking only live nodes (the seed may be ``old``)."""
    live = [ClusterNode("127.0.0.1", port) for port in cluster.ports if f"127.0.0.1:{port}" != old]
    try:
        name = await owner(aioredis.RedisCluster(startup_nodes=live), key)
    except Exception:
        return None  # the cluster is still deciding
    return name if name != old else None


async def healthy(http: aiohttp.ClientSession) -> bool:
    async with http.get("/health") as resp:
        return resp.status == 200


async def session_status(http: aiohttp.ClientSession, token: str) -> int | None:
    """The status of registering ``token``, or None while Redis is unavailable (503)."""
    async with http.post("/session", json={"ble_token": token, "interests": ["devops"]}) as resp:
        return None if resp.status == 503 else resp.status


async def shard_subscribers(node: aioredis.Redis, channel: str) -> bool:
    reply = await node.execute_command("PUBSUB", "SHARDNUMSUB", channel)  # type: ignore[no-untyped-call]
    return int(reply[1]) == 1


async def match_answer(http: aiohttp.ClientSession, own: str, secret: str, detected: str) -> dict[str, Any] | None:
    async with http.post("/match", json={"own_token": own, "detected_token": detected}, headers=bearer(secret)) as resp:
        if resp.status == 503:
            return None
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


async def test_a_cluster_that_is_down_at_start_gives_503s(make_client: MakeClient) -> None:
    client = await make_client(redis_url=f"redis://127.0.0.1:{free_port()}")  # nothing listens there
    health = await client.get("/health")
    assert health.status == 503 and (await health.json())["checks"]["redis"] == "down"
    resp = await client.post("/session", json={"ble_token": new_token(), "interests": ["devops"]})
    assert resp.status == 503 and (await resp.json())["error"]["code"] == "unavailable"
