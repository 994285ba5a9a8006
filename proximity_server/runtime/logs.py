"""Logs: one JSON object per line, with the request id, or readable text.

JSON is the default; on a terminal (stderr is a TTY) lines are readable text
instead, one record per line. ``LOG_FORMAT=json|text`` overrides the choice.

The request id is kept in a context variable set by the request-id
middleware, so every line logged while serving a request carries it without
being passed around.
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys
import time
from typing import Any, Final, TextIO

import orjson

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# LogRecord attributes that are not "extra" fields.
_STANDARD: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record; in a worker of ``run.py --workers N``, each
    line also names the worker: ``"worker": <index>, "pid": <pid>``."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
        if self.worker is not None:
            entry["worker"] = self.worker
            entry["pid"] = os.getpid()
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=repr).decode()


JSON_FORMAT: Final = "json"
TEXT_FORMAT: Final = "text"
LOG_FORMATS: Final = (JSON_FORMAT, TEXT_FORMAT)
_LEVEL_WIDTH: Final = 5


def _one_line(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text.replace("\r", "\\r").replace("\n", "\\n")


class TextFormatter(logging.Formatter):
    """``12:00:01.234 INFO  proximity_server.runtime.serve listening host=127.0.0.1 port=8080 [request id]``:
    one line per record (a traceback follows on its own lines)."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
        parts = [stamp, record.levelname.ljust(_LEVEL_WIDTH), record.name, _one_line(record.getMessage())]
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                parts.append(f"{key}={_one_line(value)}")
        if self.worker is not None:
            parts.append(f"worker={self.worker}")
        request_id = request_id_var.get()
        if request_id is not None:
            parts.append(f"[{request_id}]")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def resolve_format(configured: str | None, stream: TextIO) -> str:
    """``configured`` when set; otherwise text on a terminal, JSON elsewhere."""
    if configured:
        return configured
    try:
        return TEXT_FORMAT if stream.isatty() else JSON_FORMAT
    except (AttributeError, ValueError):
        return JSON_FORMAT


class DemoteToDebug(logging.Filter):
    """Turns a chatty library's records below WARNING into DEBUG ones (and
    drops them unless DEBUG is on). Warnings and errors pass unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def demote_to_debug(logger_name: str) -> None:
    """Install :class:`DemoteToDebug` on a logger, once."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, DemoteToDebug) for f in logger.filters):
        logger.addFilter(DemoteToDebug())


def configure_logging(level: str = "INFO", *, worker: int | None = None, fmt: str | None = None) -> None:
    """Log lines on stderr (JSON, or text on a terminal; ``fmt`` forces one);
    ``worker`` is the index of a supervised worker process."""
    handler = logging.StreamHandler(sys.stderr)
    chosen = resolve_format(fmt, sys.stderr)
    handler.setFormatter(TextFormatter(worker) if chosen == TEXT_FORMAT else JsonFormatter(worker))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp logs every request on aiohttp.access; our middleware logs instead.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
