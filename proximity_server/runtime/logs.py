"""Structured logs: one JSON object per line, with the request id.

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
from typing import Any, Final

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


def configure_logging(level: str = "INFO", *, worker: int | None = None) -> None:
    """JSON lines on stderr; ``worker`` is the index of a supervised worker process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(worker))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp logs every request on aiohttp.access; our middleware logs instead.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
