"""The web app's files: ``index.html`` and ``docs.html`` at the top of
``WEB_ROOT`` and everything under ``WEB_ROOT/static``.

Each file is read once (off the event loop) and kept in memory with its
strong ETag (a hash of its bytes) and, for text types, its gzip bytes
(compressed once). A changed file (size or mtime) is read again, so editing
the front-end needs no restart. Only regular files inside the folder are
served: ``..``, absolute paths, hidden names and symlinks out of the folder
are unknown (404).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

PACKAGE_WEB_ROOT: Final = Path(__file__).resolve().parents[1] / "web"
STATIC_DIR: Final = "static"
INDEX_FILE: Final = "index.html"
DOCS_FILE: Final = "docs.html"

CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
}
DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"
COMPRESSIBLE: Final = ("text/", "application/json", "image/svg+xml")
GZIP_MIN_BYTES: Final = 256
GZIP_LEVEL: Final = 9
MAX_CACHED_FILES: Final = 512
MAX_FILE_BYTES: Final = 8 * 1024 * 1024
MAX_PATH_CHARS: Final = 512


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzip_body: bytes | None
    etag: str  # quoted, strong
    gzip_etag: str
    content_type: str
    version: tuple[int, int]  # (size, mtime_ns) when read

    def etags(self) -> tuple[str, str]:
        return self.etag, self.gzip_etag


def content_type_of(name: str) -> str:
    return CONTENT_TYPES.get(PurePosixPath(name).suffix.lower(), DEFAULT_CONTENT_TYPE)


def build_asset(data: bytes, name: str, version: tuple[int, int]) -> Asset:
    content_type = content_type_of(name)
    digest = hashlib.sha256(data).hexdigest()[:32]
    packed: bytes | None = None
    if content_type.startswith(COMPRESSIBLE) and len(data) >= GZIP_MIN_BYTES:
        packed = gzip.compress(data, GZIP_LEVEL, mtime=0)
        if len(packed) >= len(data):
            packed = None
    return Asset(data, packed, f'"{digest}"', f'"{digest}-gz"', content_type, version)


def safe_relative(path: str) -> PurePosixPath | None:
    """A request path made of plain names, or None (``..``, ``.``, hidden
    names, backslashes, NULs, empty segments, absolute paths)."""
    if not path or len(path) > MAX_PATH_CHARS or "\\" in path or "\0" in path or path.startswith("/"):
        return None
    parts = path.split("/")
    if any(not part or part.startswith(".") for part in parts):
        return None
    return PurePosixPath(*parts)


def accepts_gzip(accept_encoding: str | None) -> bool:
    """``gzip`` (or ``*``) listed with a non-zero quality."""
    if not accept_encoding:
        return False
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() not in ("gzip", "*"):
            continue
        quality = params.strip().lower()
        if quality.startswith("q="):
            try:
                return float(quality[2:]) > 0
            except ValueError:
                return False
        return True
    return False


def etag_matches(if_none_match: str | None, etags: tuple[str, ...]) -> bool:
    """``If-None-Match`` (weak comparison, as RFC 9110 asks for it)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    presented = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return any(tag in presented for tag in etags)


class WebFiles:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._static = self.root / STATIC_DIR
        # Request name -> (file path, asset): a hit costs a dict lookup and a stat.
        self._cache: dict[str, tuple[str, Asset]] = {}

    async def page(self, name: str) -> Asset | None:
        """A top-level page (index.html, docs.html)."""
        return await self._get(name, lambda: self.root / name, self.root)

    async def static(self, path: str) -> Asset | None:
        def locate() -> Path | None:
            relative = safe_relative(path)
            return None if relative is None else self._static / relative

        return await self._get(f"{STATIC_DIR}/{path}", locate, self._static)

    async def _get(self, name: str, locate: Callable[[], Path | None], inside: Path) -> Asset | None:
        hit = self._cache.get(name)
        if hit is not None:
            version = _version(hit[0])
            if version == hit[1].version:
                return hit[1]
            if version is None:
                del self._cache[name]
                return None
        path = locate()
        if path is None:
            return None
        version = _version(os.fspath(path))
        if version is None:
            return None
        asset = await asyncio.to_thread(_read_inside, path, inside, version)
        if asset is None:
            return None
        if len(self._cache) >= MAX_CACHED_FILES:
            self._cache.pop(next(iter(self._cache)))
        self._cache[name] = (os.fspath(path), asset)
        return asset


def _version(path: str) -> tuple[int, int] | None:
    """(size, mtime_ns) of a regular file of at most MAX_FILE_BYTES, else None.
    One stat per request (a few µs, from the page cache) keeps edits live; a
    thread hop would cost more than the call. Follows symlinks: where they
    lead is checked when the file is read."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
        return None
    return info.st_size, info.st_mtime_ns


def _read_inside(path: Path, inside: Path, version: tuple[int, int]) -> Asset | None:
    real = path.resolve()
    if not real.is_relative_to(inside.resolve()):
        return None  # a symlink that leads out of the folder
    try:
        with open(real, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_FILE_BYTES:
        return None
    return build_asset(data, os.fspath(path), version)
