"""Browser tests: the real server (``python run.py``) driven by Chromium.

They need the ``playwright`` package and Debian's Chromium at
``/usr/bin/chromium``; without either they are skipped with the reason.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from config.settings import Settings
from tests.conftest import namespaced_settings
from tests.servers import env_for, free_port, start_run_py, stop_process, wait_until_live

CHROMIUM = Path("/usr/bin/chromium")
HERE = Path(__file__).resolve().parent
SCREENSHOTS = HERE / "screenshots"
AXE = HERE / "vendor" / "axe.min.js"

if importlib.util.find_spec("playwright") is None:
    pytest.skip(
        "browser tests need the 'playwright' package (pip install -r requirements-dev.txt)", allow_module_level=True
    )
if not CHROMIUM.exists():
    pytest.skip(f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

from playwright.async_api import Browser, async_playwright  # noqa: E402

# Generous limits: the tests sign up and chat faster than any person.
SERVER_ENV = {
    "RATE_LIMIT_AUTH_PER_MINUTE": "1000",
    "RATE_LIMIT_API_PER_MINUTE": "10000",
    "RATE_LIMIT_MESSAGES_PER_MINUTE": "1000",
    "STATS_FLUSH_INTERVAL": "3600",
}


@pytest.fixture
async def web_base(settings: Settings, tmp_path: Path) -> AsyncIterator[str]:
    """The base URL of a real server on this test's schema and Redis prefix."""
    port = free_port()
    env = env_for(settings, DATA_DIR=str(tmp_path / "data"), **SERVER_ENV)
    proc = start_run_py(port, env, tmp_path / "server.log")
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_until_live(base, proc)
        async with aiohttp.ClientSession() as http, http.get(f"{base}/") as resp:
            if resp.status != 200 or "text/html" not in resp.headers.get("Content-Type", ""):
                pytest.skip("this server does not serve the web app at / yet")
        yield base
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
async def module_web_base(
    service_urls: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """One real server for a whole module, on its own schema and Redis prefix
    (each test makes its own accounts, so they do not see each other's)."""
    database_url, redis_url = service_urls
    tmp = tmp_path_factory.mktemp("web")
    async for settings in namespaced_settings(database_url, redis_url, cluster=False):
        port = free_port()
        proc = start_run_py(port, env_for(settings, DATA_DIR=str(tmp / "data"), **SERVER_ENV), tmp / "server.log")
        base = f"http://127.0.0.1:{port}"
        try:
            await wait_until_live(base, proc)
            yield base
        finally:
            stop_process(proc)


@pytest.fixture(scope="module")
async def module_browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            await chromium.close()


def pytest_configure(config: Any) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
