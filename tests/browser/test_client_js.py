"""Runs the JavaScript client's unit tests (``client.test.mjs``) with Node's
own test runner; skipped when ``node`` (18 or newer) is not installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
NODE_TESTS = HERE / "client.test.mjs"
TIMEOUT_SECONDS = 60


def test_client_js_unit_tests_pass() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("the JavaScript client's tests need node (apt-get install nodejs)")
    done = subprocess.run(
        [node, "--test", str(NODE_TESTS)], capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
