"""Test fixtures: real PostgreSQL and Redis, isolated per test.

With DATABASE_URL and REDIS_URL set, tests use those servers; otherwise an
embedded PostgreSQL and Redis are started once for the run under
``.data/test`` (see proximity_server/embedded.py) and stopped at the end.
Each test gets its own PostgreSQL schema and Redis key prefix, and drops
them afterwards.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
import uvloop
from aiohttp import web
from aiohttp.test_utils import TestClient

from config.settings import Settings, normalise_database_url
from proximity_server import create_app
from proximity_server.embedded import EmbeddedServices

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


@pytest.fixture
async def settings(service_urls: tuple[str, str]) -> AsyncIterator[Settings]:
    database_url, redis_url = service_urls
    tag = secrets.token_hex(6)
    schema = f"t_{tag}"
    value = Settings(
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=f"t:{tag}:",
        db_schema=schema,
        admin_token=ADMIN_TOKEN,
        stats_flush_interval=3600.0,  # tests flush explicitly
        ws_heartbeat_seconds=5.0,
        access_log=False,
    )
    yield value
    await drop_test_namespace(database_url, redis_url, schema, value.redis_prefix)


async def drop_test_namespace(database_url: str, redis_url: str, schema: str, redis_prefix: str) -> None:
    """Remove what one test made: its PostgreSQL schema and its Redis keys."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    assert settings.redis_url
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
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
