"""Log formats (JSON by default, text on a terminal, LOG_FORMAT overrides) and
the embedded PostgreSQL's chatter kept at DEBUG."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from config.settings import Settings, SettingsError
from proximity_server.runtime.logs import (
    JSON_FORMAT,
    TEXT_FORMAT,
    JsonFormatter,
    TextFormatter,
    demote_to_debug,
    request_id_var,
    resolve_format,
)

ROOT = Path(__file__).resolve().parents[2]


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_format_is_text_on_a_terminal_and_json_elsewhere() -> None:
    assert resolve_format(None, FakeTty()) == TEXT_FORMAT
    assert resolve_format(None, io.StringIO()) == JSON_FORMAT
    assert resolve_format(JSON_FORMAT, FakeTty()) == JSON_FORMAT
    assert resolve_format(TEXT_FORMAT, io.StringIO()) == TEXT_FORMAT


def test_log_format_setting() -> None:
    assert Settings.from_env({}).log_format is None
    assert Settings.from_env({"LOG_FORMAT": "Text"}).log_format == "text"
    assert Settings.from_env({"LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(SettingsError, match="LOG_FORMAT"):
        Settings.from_env({"LOG_FORMAT": "xml"})


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("proximity_server.run", logging.INFO, __file__, 1, msg, None, None)
    record.__dict__.update(extra)
    return record


def test_text_lines_are_readable_and_one_line_each() -> None:
    token = request_id_var.set("req-1")
    try:
        line = TextFormatter().format(_record("listening\nnow", host="127.0.0.1", port=8080))
    finally:
        request_id_var.reset(token)
    assert "\n" not in line
    assert " INFO  proximity_server.run listening\\nnow host=127.0.0.1 port=8080 [req-1]" in line
    as_json = orjson.loads(JsonFormatter().format(_record("listening", port=8080)))
    assert as_json["msg"] == "listening" and as_json["port"] == 8080


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers[:] = [handler]
    chatty = logging.getLogger("test_chatty_library")
    try:
        yield stream, chatty
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        chatty.filters.clear()


def test_chatter_is_demoted_to_debug(captured: tuple[io.StringIO, logging.Logger]) -> None:
    stream, chatty = captured
    demote_to_debug(chatty.name)
    demote_to_debug(chatty.name)  # once only
    assert len(chatty.filters) == 1
    logging.getLogger().setLevel(logging.INFO)
    chatty.info("Running commandline: initdb ...")
    chatty.warning("a warning stays")
    chatty.error("an error stays")
    assert stream.getvalue().splitlines() == [
        "WARNING test_chatty_library a warning stays",
        "ERROR test_chatty_library an error stays",
    ]
    logging.getLogger().setLevel(logging.DEBUG)
    chatty.info("visible at debug")
    assert stream.getvalue().splitlines()[-1] == "DEBUG test_chatty_library visible at debug"


START_EMBEDDED_POSTGRES = """
import sys
from pathlib import Path
from proximity_server.runtime.logs import configure_logging
from proximity_server.runtime.embedded import EmbeddedServices
configure_logging(sys.argv[2], fmt="json")
services = EmbeddedServices(Path(sys.argv[1]))
services.start(redis=False)
services.stop()
"""


def test_embedded_postgres_start_up_chatter_is_at_debug(tmp_path: Path) -> None:
    """A real initdb and start: at INFO only our own one-line summary shows."""
    result = subprocess.run(
        [sys.executable, "-c", START_EMBEDDED_POSTGRES, str(tmp_path / "data"), "INFO"],
        cwd=ROOT,
        capture_output=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    lines = [line for line in result.stderr.decode().splitlines() if line.startswith("{")]
    records = [orjson.loads(line) for line in lines]
    assert any(r["msg"].startswith("started embedded PostgreSQL") for r in records), lines
    assert not [r for r in records if r["logger"] == "pgserver"], "pgserver chatter at INFO"
    assert "initdb" not in result.stderr.decode() and "Running commandline" not in result.stderr.decode()
