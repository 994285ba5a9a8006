"""Data export (GDPR art. 15 and 20): a zip of everything the server holds
about the user, built in the background, downloadable for 48 hours.

``POST /me/export`` (password again) starts a job: one per user per 24 hours.
The file is built by a task of this process, off the request:

* messages are read in keyset pages, photos streamed chunk by chunk, and
  each piece is written to a temporary zip file from a worker thread (zip
  compression never runs on the event loop), so memory does not grow with
  the size of the export;
* the finished file goes to the photo store (a multipart upload on S3) under
  a key naming only the export, and the temporary file is removed;
* other people appear under pseudonyms made for this export only.

The cleanup outbox (``features/erasure.CleanupWorker``) deletes expired
exports. A job whose process died while building it is left ``running``
until it expires (48 hours after it started) and then deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import tempfile
import time
import uuid
import zipfile
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import IO, Any, Final

import orjson

from proximity_server.features.accounts import AccountService
from proximity_server.features.errors import NotFound, RateLimited, Unauthorized
from store.export import READY, ExportJob, ExportStore, export_object_key
from store.photos import PhotoMissing, PhotoStore

log = logging.getLogger(__name__)

EXPORT_FORMAT_VERSION: Final = 1
EXPORT_INTERVAL: Final = dt.timedelta(hours=24)
EXPORT_TTL: Final = dt.timedelta(hours=48)
MESSAGE_PAGE: Final = 500
ZIP_CONTENT_TYPE: Final = "application/zip"
NO_SUCH_EXPORT: Final = "no such export"
PHOTO_EXTENSIONS: Final = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}

README_TEXT: Final = f"""Your data, exported by proximity_server (export format version {EXPORT_FORMAT_VERSION}).

Every .json file is UTF-8 JSON. Times are ISO 8601 in UTC. Other people never
appear by their account id: each has a pseudonym ("person-...") made for this
export only, the same one in every file of it.

README.txt           this file
account.json         your account: user_id, email, created_at
profile.json         your profile as you entered it (null when you have none),
                     and "photos": metadata of each photo, with "file" naming
                     it under photos/
photos/              your photos themselves, as stored (EXIF and GPS were
                     removed when you uploaded them), named
                     <position>-<photo id>.<jpg|png|webp>
likes.json           "likes": the people you liked or passed on (action like or
                     pass, created_at); "blocks": the people you blocked
matches.json         your matches: match_id, other (pseudonym), created_at,
                     ended_at (null while active), conversation_id
conversations/<id>.json
                     one file per conversation: conversation_id, match_id,
                     other (pseudonym), created_at, closed_at,
                     last_read_message_id (your read mark) and "messages":
                     both sides, oldest first: id, from ("you" or the
                     pseudonym), client_id, text, created_at
reports.json         the reports you made: report_id, about (pseudonym),
                     reason, details, created_at
sessions.json        proximity sessions: none are kept durably (they live in
                     Redis only for their lifetime, at most a few hours, with
                     interests reduced to categories), so the list is empty
"""

SESSIONS_NOTE: Final = (
    "Proximity sessions are not kept: each lives in Redis only until it expires "
    "(SESSION_TTL_SECONDS, 2 hours by default), and only interest categories and "
    "a digest of your interests are stored there. There is no session history."
)


class Pseudonyms:
    """Other people's ids -> names made for one export."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}

    def __call__(self, user_id: object) -> str:
        key = str(user_id)
        if key not in self._names:
            self._names[key] = f"person-{uuid.uuid4()}"
        return self._names[key]


def _json(value: object) -> bytes:
    return orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def job_view(job: ExportJob) -> dict[str, Any]:
    view: dict[str, Any] = {"id": job.id, "status": job.status, "created_at": _iso(job.created_at)}
    if job.status == READY:
        view["download_url"] = f"/me/export/{job.id}/download"
        view["expires_at"] = _iso(job.expires_at)
        view["size_bytes"] = job.size_bytes
    return view


class ZipFileWriter:
    """A zip being written to a local file, one entry at a time, every write
    in a worker thread."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self._zip = archive

    @classmethod
    async def create(cls, path: Path) -> ZipFileWriter:
        archive = await asyncio.to_thread(zipfile.ZipFile, path, "w", zipfile.ZIP_DEFLATED)
        return cls(archive)

    async def write(self, name: str, data: bytes) -> None:
        await asyncio.to_thread(self._zip.writestr, name, data)

    async def open(self, name: str, *, compress: bool = True) -> IO[bytes]:
        info = zipfile.ZipInfo(name, date_time=time.gmtime()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        return await asyncio.to_thread(self._zip.open, info, "w", force_zip64=True)

    @staticmethod
    async def put(handle: IO[bytes], data: bytes) -> None:
        await asyncio.to_thread(handle.write, data)

    @staticmethod
    async def close_entry(handle: IO[bytes]) -> None:
        await asyncio.to_thread(handle.close)

    async def close(self) -> None:
        await asyncio.to_thread(self._zip.close)


class ExportBuilder:
    """Writes one user's export into a zip, streaming from PostgreSQL and storage."""

    def __init__(self, store: ExportStore, photos: PhotoStore, user_id: str) -> None:
        self._store = store
        self._photos = photos
        self._user_id = user_id
        self._names = Pseudonyms()

    def _other(self, row: dict[str, Any]) -> dict[str, Any]:
        other = row.pop("other")
        return {"other": None if other is None else self._names(other), **row}

    async def write(self, out: ZipFileWriter) -> None:
        store, uid = self._store, self._user_id
        await out.write("README.txt", README_TEXT.encode())
        account = await store.account(uid)
        if account is None:
            raise LookupError("the account is gone")
        await out.write(
            "account.json", _json({"user_id": account["id"], **{k: account[k] for k in ("email", "created_at")}})
        )
        await self._photos_and_profile(out)
        likes = [self._other(r) for r in await store.likes(uid)]
        blocks = [self._other(r) for r in await store.blocks(uid)]
        await out.write("likes.json", _json({"likes": likes, "blocks": blocks}))
        matches = [self._other({"match_id": r.pop("id"), **r}) for r in await store.matches(uid)]
        await out.write("matches.json", _json(matches))
        for conversation in await store.conversations(uid):
            await self._conversation(out, conversation)
        reports = [
            {
                "report_id": r["id"],
                "about": self._names(r["other"]),
                **{k: r[k] for k in ("reason", "details", "created_at")},
            }
            for r in await store.reports(uid)
        ]
        await out.write("reports.json", _json(reports))
        await out.write("sessions.json", _json({"note": SESSIONS_NOTE, "sessions": []}))

    async def _photos_and_profile(self, out: ZipFileWriter) -> None:
        listed = []
        for photo in await self._store.photos(self._user_id):
            name = f"photos/{photo['position']:02d}-{photo['id']}.{PHOTO_EXTENSIONS.get(photo['content_type'], 'bin')}"
            entry: dict[str, Any] = {k: v for k, v in photo.items() if k != "object_key"}
            try:
                chunks: AsyncGenerator[bytes, None] = await self._photos.open(photo["object_key"])
            except PhotoMissing:
                entry["file"] = None
            else:
                handle = await out.open(name, compress=False)  # images are compressed already
                try:
                    async for chunk in chunks:
                        await out.put(handle, chunk)
                finally:
                    await out.close_entry(handle)
                entry["file"] = name
            listed.append(entry)
        profile = await self._store.profile(self._user_id)
        await out.write("profile.json", _json({"profile": profile, "photos": listed}))

    async def _conversation(self, out: ZipFileWriter, conversation: dict[str, Any]) -> None:
        cid = str(conversation["id"])
        head = {
            "conversation_id": cid,
            "match_id": conversation["match_id"],
            "other": self._names(conversation["other"]),
            "created_at": conversation["created_at"],
            "closed_at": conversation["closed_at"],
            "last_read_message_id": conversation["last_read_message_id"],
        }
        handle = await out.open(f"conversations/{cid}.json")
        try:
            await out.put(handle, orjson.dumps(head, default=str, option=orjson.OPT_UTC_Z)[:-1] + b',"messages":[\n')
            after, first = 0, True
            while page := await self._store.messages_page(cid, after, MESSAGE_PAGE):
                items = []
                for m in page:
                    sender = "you" if str(m["sender"]) == self._user_id else self._names(m["sender"])
                    item = {"id": m["id"], "from": sender, "client_id": m["client_id"], "text": m["text"]}
                    item["created_at"] = m["created_at"]
                    items.append(orjson.dumps(item, option=orjson.OPT_UTC_Z))
                await out.put(handle, (b"" if first else b",\n") + b",\n".join(items))
                first, after = False, page[-1]["id"]
                if len(page) < MESSAGE_PAGE:
                    break
            await out.put(handle, b"\n]}\n")
        finally:
            await out.close_entry(handle)


class ExportService:
    def __init__(self, store: ExportStore, photos: PhotoStore, accounts: AccountService) -> None:
        self._store = store
        self._photos = photos
        self._accounts = accounts
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, user_id: str, password: str) -> dict[str, Any]:
        await self._accounts.reauthenticate(user_id, password)
        started = await self._store.start(user_id, EXPORT_INTERVAL, EXPORT_TTL)
        if started.job is None:
            if started.retry_after_seconds:
                wait = started.retry_after_seconds
                raise RateLimited(f"one export per 24 hours; retry in {wait} s", headers={"Retry-After": str(wait)})
            raise Unauthorized("this account no longer exists")
        job = started.job
        task = asyncio.create_task(self.build(job.id, user_id), name="data-export")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return {"id": job.id, "status": job.status}

    async def status(self, user_id: str, export_id: str) -> dict[str, Any]:
        return job_view(await self._live_job(user_id, export_id))

    async def download(self, user_id: str, export_id: str) -> tuple[int | None, AsyncGenerator[bytes, None]]:
        """The ready file's size and bytes, in chunks."""
        job = await self._live_job(user_id, export_id)
        if job.status != READY or job.object_key is None:
            raise NotFound("this export is not ready")
        try:
            return job.size_bytes, await self._photos.open(job.object_key)
        except PhotoMissing:
            raise NotFound(NO_SUCH_EXPORT) from None

    async def _live_job(self, user_id: str, export_id: str) -> ExportJob:
        job = await self._store.job(user_id, export_id)
        if job is None or (job.expires_at is not None and job.expires_at <= dt.datetime.now(dt.UTC)):
            raise NotFound(NO_SUCH_EXPORT)
        return job

    async def build(self, export_id: str, user_id: str) -> None:
        """Build, store and record one export; a failure marks it ``failed``."""
        fd, name = tempfile.mkstemp(prefix="export-", suffix=".zip")
        os.close(fd)
        path = Path(name)
        try:
            if not await self._store.set_running(export_id):
                return
            out = await ZipFileWriter.create(path)
            try:
                await ExportBuilder(self._store, self._photos, user_id).write(out)
            finally:
                await out.close()
            size = (await asyncio.to_thread(path.stat)).st_size
            key = export_object_key(export_id)
            await self._photos.put_file(key, path, ZIP_CONTENT_TYPE)
            await self._store.set_ready(export_id, key, size, dt.datetime.now(dt.UTC) + EXPORT_TTL)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("data export failed", extra={"error": type(exc).__name__})
            with contextlib.suppress(Exception):
                await self._store.set_failed(export_id, dt.datetime.now(dt.UTC) + EXPORT_TTL)
        finally:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(path.unlink)

    async def wait_idle(self) -> None:
        """Wait for the exports being built (tests, benchmarks)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
