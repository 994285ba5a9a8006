"""Schemathesis against a live ``run.py`` (real PostgreSQL and Redis): random
requests built from /openapi.json get no 5xx, and every response's status,
content type and body match the document. Bounded to a few examples per
operation; skipped when schemathesis is not installed."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

import requests  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.auth_helpers import TEST_JWT_SECRET, TEST_PASSWORD  # noqa: E402
from tests.conftest import ADMIN_TOKEN, drop_test_namespace  # noqa: E402
from tests.servers import free_port, run_py_env, start_run_py  # noqa: E402

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


class Live:
    def __init__(self, base: str, access_token: str) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {access_token}"}


def _cleanup(database_url: str, redis_url: str, schema: str, prefix: str) -> None:
    """On a thread of its own: this fixture is synchronous and may run inside a loop."""
    thread = threading.Thread(target=asyncio.run, args=(drop_test_namespace(database_url, redis_url, schema, prefix),))
    thread.start()
    thread.join(30)


@pytest.fixture(scope="module")
def live_server(service_urls: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    database_url, redis_url = service_urls
    tag = secrets.token_hex(6)
    schema, prefix = f"t_{tag}", f"t:{tag}:"
    port = free_port()
    env = run_py_env(
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=prefix,
        db_schema=schema,
        **{
            "STATS_FLUSH_INTERVAL": "3600",
            "SHUTDOWN_GRACE_SECONDS": "2",
            "ADMIN_TOKEN": ADMIN_TOKEN,
            "JWT_SECRET": TEST_JWT_SECRET,
            "PASSWORD_HASH_PROFILE": "test",
            "RATE_LIMIT_AUTH_PER_MINUTE": "100000",
            "RATE_LIMIT_API_PER_MINUTE": "100000",
            "RATE_LIMIT_MESSAGES_PER_MINUTE": "100000",
            "DATA_DIR": str(tmp_path_factory.mktemp("data")),
            "ACCESS_LOG": "0",
            "LOG_LEVEL": "WARNING",
        },
    )
    log_path = tmp_path_factory.mktemp("log") / "server.log"
    proc = start_run_py(port, env, log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            assert proc.poll() is None, log_path.read_text()[-2000:]
            try:
                if requests.get(f"{base}/livez", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.1)
        email = f"fuzz_{tag}@example.com"
        resp = requests.post(f"{base}/auth/register", json={"email": email, "password": TEST_PASSWORD}, timeout=10)
        assert resp.status_code == 201, resp.text
        yield Live(base, resp.json()["access_token"])
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        _cleanup(database_url, redis_url, schema, prefix)


@pytest.fixture(scope="module")
def api_schema(live_server: Live) -> Any:
    loaded = schemathesis.openapi.from_url(f"{live_server.base}/openapi.json")
    return loaded  # the WebSocket routes only see plain GETs here (400); test_ws_fuzz.py fuzzes their frames


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()  # type: ignore[untyped-decorator]
@settings(
    max_examples=int(os.environ.get("API_FUZZ_EXAMPLES", "8")),
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_document(case: Any, live_server: Live) -> None:
    case.call_and_validate(base_url=live_server.base, headers=live_server.headers, checks=CHECKS, timeout=10)
