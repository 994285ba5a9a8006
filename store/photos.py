"""Photos: bytes in a :class:`PhotoStore` (S3-compatible storage through
aiobotocore, or a local directory when none is configured) and metadata in
PostgreSQL (``photos``), every query scoped by the owner's user id.

Object keys are ``{user_id}/{photo_id}`` and ``{user_id}/{photo_id}.thumb``;
they are generated here, never taken from a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shutil
import uuid
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import asyncpg
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

STREAM_CHUNK_BYTES: Final = 64 * 1024
# Files (data exports) go up in parts of this size: memory stays at one part.
UPLOAD_PART_BYTES: Final = 8 * 1024 * 1024


class PhotoMissing(LookupError):
    """The object is not in the store."""


class PhotoStore(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        """Store a local file without reading it into memory at once."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""
        ...

    async def open(self, key: str) -> AsyncGenerator[bytes, None]:
        """The object's bytes in chunks; raises :class:`PhotoMissing` before
        yielding anything when there is no such object."""
        ...


def object_keys(user_id: str, photo_id: str) -> tuple[str, str]:
    return f"{user_id}/{photo_id}", f"{user_id}/{photo_id}.thumb"


class LocalPhotoStore:
    """Objects as files under one directory (a laptop, the tests)."""

    def __init__(self, root: Path) -> None:
        self._root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self._root / key).resolve()
        if self._root.resolve() not in path.parents:
            raise PhotoMissing(key)
        return path

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._write, self._path(key), data)

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        await asyncio.to_thread(self._copy, path, self._path(key))

    @staticmethod
    def _copy(source: Path, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, path)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # readers never see a half-written file

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._remove, self._path(key))

    def _remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        # The folder is named after the owner: once empty, it goes too.
        if path.parent != self._root.resolve():
            with contextlib.suppress(OSError):  # not empty, or already gone
                path.parent.rmdir()

    async def open(self, key: str) -> AsyncGenerator[bytes, None]:
        path = self._path(key)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise PhotoMissing(key) from None
        return self._chunks(handle)

    @staticmethod
    async def _chunks(handle: Any) -> AsyncGenerator[bytes, None]:
        try:
            while chunk := await asyncio.to_thread(handle.read, STREAM_CHUNK_BYTES):
                yield chunk
        finally:
            handle.close()


class S3PhotoStore:
    """Objects in an S3-compatible bucket, through an aiobotocore client whose
    lifetime the caller owns (``lifecycle.photos_ctx``)."""

    def __init__(self, client: Any, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await self._client.put_object(Bucket=self._bucket, Key=key, Body=data, ContentType=content_type)

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        """One PUT for a small file, a multipart upload (one part in memory at a time) otherwise."""
        handle = await asyncio.to_thread(path.open, "rb")
        try:
            first = await asyncio.to_thread(handle.read, UPLOAD_PART_BYTES)
            if len(first) < UPLOAD_PART_BYTES:
                await self.put(key, first, content_type)
                return
            upload = await self._client.create_multipart_upload(Bucket=self._bucket, Key=key, ContentType=content_type)
            upload_id = upload["UploadId"]
            parts: list[dict[str, Any]] = []
            try:
                chunk = first
                while chunk:
                    number = len(parts) + 1
                    reply = await self._client.upload_part(
                        Bucket=self._bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
                    )
                    parts.append({"PartNumber": number, "ETag": reply["ETag"]})
                    chunk = await asyncio.to_thread(handle.read, UPLOAD_PART_BYTES)
                await self._client.complete_multipart_upload(
                    Bucket=self._bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
            except BaseException:
                with contextlib.suppress(Exception):
                    await self._client.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)
                raise
        finally:
            handle.close()

    async def delete(self, key: str) -> None:
        await self._client.delete_object(Bucket=self._bucket, Key=key)

    async def open(self, key: str) -> AsyncGenerator[bytes, None]:
        try:
            response = await self._client.get_object(Bucket=self._bucket, Key=key)
        except self._client.exceptions.NoSuchKey:
            raise PhotoMissing(key) from None
        return self._chunks(response["Body"])

    @staticmethod
    async def _chunks(body: Any) -> AsyncGenerator[bytes, None]:
        async with body as stream:
            while chunk := await stream.read(STREAM_CHUNK_BYTES):
                yield chunk


@dataclass(frozen=True, slots=True)
class Photo:
    photo_id: str
    user_id: str
    position: int
    content_type: str
    width: int
    height: int
    size_bytes: int
    object_key: str
    thumb_key: str
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class NewPhoto:
    photo_id: str
    content_type: str
    width: int
    height: int
    size_bytes: int
    object_key: str
    thumb_key: str


_COLUMNS: Final = "id, user_id, position, content_type, width, height, size_bytes, object_key, thumb_key, created_at"


def photo_from_row(row: asyncpg.Record) -> Photo:
    return Photo(
        photo_id=str(row["id"]),
        user_id=str(row["user_id"]),
        position=row["position"],
        content_type=row["content_type"],
        width=row["width"],
        height=row["height"],
        size_bytes=row["size_bytes"],
        object_key=row["object_key"],
        thumb_key=row["thumb_key"],
        created_at=row["created_at"],
    )


class PhotoLimitReached(Exception):
    """The user already has the maximum number of photos."""


class PhotoOrderMismatch(Exception):
    """A reorder did not name exactly the user's photos."""

    def __init__(self, unknown: bool) -> None:
        super().__init__("unknown photo ids" if unknown else "not exactly the user's photos")
        self.unknown = unknown


class PhotoRecords:
    """Photo metadata in PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def count(self, user_id: str) -> int:
        return int(await self._pool.fetchval("SELECT count(*) FROM photos WHERE user_id = $1", user_id))

    async def add(self, user_id: str, photo: NewPhoto, max_photos: int) -> Photo | None:
        """Append a photo at the next position. None if the user is gone;
        :class:`PhotoLimitReached` at ``max_photos``. The user row is locked so
        two concurrent uploads cannot both take the last place."""
        async with self._pool.acquire() as conn, conn.transaction():
            live = await conn.fetchval("SELECT id FROM users WHERE id = $1 AND deleted_at IS NULL FOR UPDATE", user_id)
            if live is None:
                return None
            taken = await conn.fetchrow(
                "SELECT coalesce(max(position) + 1, 0) AS next, count(*) AS n FROM photos WHERE user_id = $1",
                user_id,
            )
            if taken["n"] >= max_photos:
                raise PhotoLimitReached
            row = await conn.fetchrow(
                f"""INSERT INTO photos (id, user_id, position, content_type, width, height, size_bytes,
                                        object_key, thumb_key)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                    RETURNING {_COLUMNS}""",  # noqa: S608 (constant columns)
                photo.photo_id,
                user_id,
                taken["next"],
                photo.content_type,
                photo.width,
                photo.height,
                photo.size_bytes,
                photo.object_key,
                photo.thumb_key,
            )
        return photo_from_row(row)

    async def list_for_user(self, user_id: str) -> list[Photo]:
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM photos WHERE user_id = $1 ORDER BY position",  # noqa: S608
            user_id,
        )
        return [photo_from_row(r) for r in rows]

    async def list_for_users(self, user_ids: Sequence[str]) -> dict[str, list[Photo]]:
        """Photos of several users (one discovery page) in one query."""
        if not user_ids:
            return {}
        rows = await self._pool.fetch(
            f"""SELECT {_COLUMNS} FROM photos
                WHERE user_id = ANY($1::uuid[]) ORDER BY user_id, position""",  # noqa: S608
            list(user_ids),
        )
        result: dict[str, list[Photo]] = {}
        for row in rows:
            photo = photo_from_row(row)
            result.setdefault(photo.user_id, []).append(photo)
        return result

    async def get_visible(self, photo_id: str) -> Photo | None:
        """A photo whose owner is a live user (what signed-in users may view)."""
        row = await self._pool.fetchrow(
            f"""SELECT {", ".join("ph." + c for c in _COLUMNS.split(", "))}
                FROM photos ph JOIN users u ON u.id = ph.user_id
                WHERE ph.id = $1 AND u.deleted_at IS NULL""",  # noqa: S608
            photo_id,
        )
        return photo_from_row(row) if row is not None else None

    async def delete(self, user_id: str, photo_id: str) -> Photo | None:
        """Remove the user's own photo and close the gap in positions."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"DELETE FROM photos WHERE id = $1 AND user_id = $2 RETURNING {_COLUMNS}",  # noqa: S608
                photo_id,
                user_id,
            )
            if row is None:
                return None
            await conn.execute(
                "UPDATE photos SET position = position - 1 WHERE user_id = $1 AND position > $2",
                user_id,
                row["position"],
            )
        return photo_from_row(row)

    async def reorder(self, user_id: str, photo_ids: Sequence[str]) -> list[Photo]:
        """Set positions to the order of ``photo_ids``, which must be exactly the
        user's photos; :class:`PhotoOrderMismatch` (nothing changed) otherwise."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT id FROM users WHERE id = $1 FOR UPDATE", user_id)
            current = {str(r["id"]) for r in await conn.fetch("SELECT id FROM photos WHERE user_id = $1", user_id)}
            if not current.issuperset(photo_ids):
                raise PhotoOrderMismatch(unknown=True)
            if current != set(photo_ids) or len(current) != len(photo_ids):
                raise PhotoOrderMismatch(unknown=False)
            await conn.execute(
                """UPDATE photos ph SET position = o.ord - 1
                   FROM unnest($2::uuid[]) WITH ORDINALITY AS o(id, ord)
                   WHERE ph.id = o.id AND ph.user_id = $1""",
                user_id,
                list(photo_ids),
            )
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM photos WHERE user_id = $1 ORDER BY position",  # noqa: S608
                user_id,
            )
        return [photo_from_row(r) for r in rows]


async def open_s3_store(
    stack: contextlib.AsyncExitStack,
    *,
    endpoint_url: str,
    bucket: str,
    region: str,
    access_key_id: str | None,
    secret_access_key: str | None,
) -> S3PhotoStore:
    """An :class:`S3PhotoStore` whose client closes with ``stack``. Path-style
    addressing works with every S3-compatible server (MinIO, moto, Ceph)."""
    client = await stack.enter_async_context(
        get_session().create_client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=AioConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"}),
        )
    )
    return S3PhotoStore(client, bucket)
