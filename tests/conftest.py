"""Test fixtures: real PostgreSQL and Redis, isolated per test.

With DATABASE_URL and REDIS_URL set, tests use those servers; otherwise an
embedded PostgreSQL and Redis are started once for the run under
``.data/test`` (see proximity_server/runtime/embedded.py) and stopped at the end.
Each test gets its own PostgreSQL schema and Redis key prefix, and drops
them afterwards.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
import uvloop
from aiohttp import web
from aiohttp.test_utils import TestClient

from config.settings import Settings, normalise_database_url
from proximity_server import create_app
from proximity_server.runtime.embedded import EmbeddedServices
from store.redis_client import RedisClient, create_client
from tests.redis_cluster import running_cluster

ADMIN_TOKEN = "test-admin-token-" + "x" * 16
TEST_DATA_DIR = Path(__file__).resolve().parent.parent / ".data" / "test"


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Tests run on uvloop, like the server."""
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture(scope="session")
def service_urls() -> Iterator[tuple[str, str]]:
    database_url = os.environ.get("DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL")
    embedded: EmbeddedServices | None = None
    if not database_url or not redis_url:
        embedded = EmbeddedServices(TEST_DATA_DIR)
        embedded.start(postgres=not database_url, redis=not redis_url)
        database_url = database_url or embedded.database_url
        redis_url = redis_url or embedded.redis_url
    try:
        yield normalise_database_url(database_url), redis_url
    finally:
        if embedded is not None:
            embedded.stop()


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A three-primary Redis Cluster for the run (skips the test if no redis-server 7 is here)."""
    with running_cluster(Path(tempfile.mkdtemp(prefix="px-cluster-"))) as cluster:
        yield cluster.url


@pytest.fixture
async def settings(service_urls: tuple[str, str], request: pytest.FixtureRequest) -> AsyncIterator[Settings]:
    """Each test's own namespace. ``TEST_REDIS_CLUSTER=1`` runs the suite on a Redis Cluster."""
    database_url, redis_url = service_urls
    cluster = os.environ.get("TEST_REDIS_CLUSTER") == "1"
    if cluster:
        redis_url = request.getfixturevalue("redis_cluster_url")
    async for value in namespaced_settings(database_url, redis_url, cluster=cluster):
        yield value


async def namespaced_settings(database_url: str, redis_url: str, *, cluster: bool) -> AsyncIterator[Settings]:
    tag = secrets.token_hex(6)
    schema = f"t_{tag}"
    value = Settings(
        database_url=database_url,
        redis_url=redis_url,
        redis_cluster=cluster,
        redis_prefix=f"t:{tag}:",
        db_schema=schema,
        admin_token=ADMIN_TOKEN,
        stats_flush_interval=3600.0,  # tests flush explicitly
        ws_heartbeat_seconds=5.0,
        access_log=False,
    )
    yield value
    await drop_test_namespace(database_url, redis_url, schema, value.redis_prefix, cluster=cluster)


async def drop_test_namespace(
    database_url: str, redis_url: str, schema: str, redis_prefix: str, *, cluster: bool = False
) -> None:
    """Remove what one test made: its PostgreSQL schema and its Redis keys."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
    if cluster:
        seed = aioredis.RedisCluster.from_url(redis_url)
        try:
            nodes = [(n.host, n.port) for n in await _primaries(seed)]
        finally:
            await seed.aclose()
        urls = [f"redis://{host}:{port}" for host, port in nodes]
    else:
        urls = [redis_url]
    for url in urls:
        client = aioredis.Redis.from_url(url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*", count=1000)]
            if keys and not cluster:
                await client.delete(*keys)
            for key in keys if cluster else ():  # one by one: they live in different slots
                await client.delete(key)
        finally:
            await client.aclose()


async def _primaries(cluster: aioredis.RedisCluster) -> list[Any]:
    await cluster.initialize()
    return list(cluster.get_primaries())


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[RedisClient]:
    assert settings.redis_url
    client = create_client(settings.redis_url, cluster=settings.redis_cluster)
    yield client
    await client.aclose()


@pytest.fixture
async def pg(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    assert settings.database_url
    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": settings.db_schema})
    yield conn
    await conn.close()


AppClient = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[AppClient]]


@pytest.fixture
def make_client(settings: Settings, aiohttp_client: Callable[[web.Application], Awaitable[AppClient]]) -> MakeClient:
    """Start an app instance (several may share one Redis and PostgreSQL).

    ``settings`` comes first so that its teardown (dropping the schema and
    the Redis keys) runs after the apps have shut down."""

    async def factory(**overrides: object) -> AppClient:
        return await aiohttp_client(create_app(settings.with_overrides(**overrides)))

    return factory


@pytest.fixture
async def client(make_client: MakeClient) -> AppClient:
    return await make_client()
