"""Data export: POST /me/export, GET /me/export/{id}[/download]; local and S3 stores."""

from __future__ import annotations

import contextlib
import io
import secrets
import zipfile
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from config.settings import Settings, photos_dir
from proximity_server.app import state as keys
from store.photos import UPLOAD_PART_BYTES, open_s3_store
from tests.api.test_photos import S3_BUCKET, S3_CREDENTIALS, s3_client, s3_endpoint  # noqa: F401 (a fixture)
from tests.conftest import AppClient, MakeClient
from tests.profile_helpers import ACCOUNT_SETTINGS, PASSWORD, User, image_bytes, put_profile, sign_up, upload

EXPECTED_FILES = {
    "README.txt",
    "account.json",
    "profile.json",
    "likes.json",
    "matches.json",
    "reports.json",
    "sessions.json",
}


@pytest.fixture
def settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings.with_overrides(**ACCOUNT_SETTINGS, data_dir=tmp_path_factory.mktemp("data"))


async def post_ok(client: AppClient, path: str, user: User, body: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post(path, json=body, headers=user.headers)
    assert resp.status in (200, 201, 204), (path, resp.status, await resp.text())
    return {} if resp.status == 204 else dict(await resp.json())


async def active_people(client: AppClient) -> tuple[User, User, User, dict[str, Any]]:
    """X (profile, two photos, a match with Y and messages both ways, a
    report about Z, a pass on Z), Y and Z; returns them and the match."""
    x, y, z = await sign_up(client), await sign_up(client), await sign_up(client)
    await put_profile(client, x, display_name="Exporter", gender="woman", interested_in=["man"])
    await put_profile(client, y, display_name="Partner", gender="man", interested_in=["woman"])
    for color in ((1, 2, 3), (4, 5, 6)):
        await upload(client, x, image_bytes(size=(40 + color[0], 30)))
    await post_ok(client, "/likes", x, {"user_id": y.user_id, "action": "like"})
    matched = await post_ok(client, "/likes", y, {"user_id": x.user_id, "action": "like"})
    cid = matched["conversation_id"]
    await post_ok(client, f"/conversations/{cid}/messages", x, {"client_id": "x0", "text": "hello from x"})
    await post_ok(client, f"/conversations/{cid}/messages", y, {"client_id": "y0", "text": "hello from y"})
    await post_ok(client, "/likes", x, {"user_id": z.user_id, "action": "pass"})
    await post_ok(client, "/reports", x, {"user_id": z.user_id, "reason": "spam", "details": "links"})
    return x, y, z, matched


async def export_ready(client: AppClient, user: User) -> dict[str, Any]:
    resp = await client.post("/me/export", json={"password": PASSWORD}, headers=user.headers)
    assert resp.status == 202, await resp.text()
    started = await resp.json()
    assert set(started) == {"id", "status"} and started["status"] == "pending"
    await client.app[keys.EXPORT].wait_idle()
    resp = await client.get(f"/me/export/{started['id']}", headers=user.headers)
    assert resp.status == 200
    job: dict[str, Any] = await resp.json()
    assert job["status"] == "ready", job
    assert job["download_url"] == f"/me/export/{started['id']}/download"
    return job


async def download(client: AppClient, user: User, job: dict[str, Any]) -> zipfile.ZipFile:
    resp = await client.get(job["download_url"], headers=user.headers)
    assert resp.status == 200 and resp.content_type == "application/zip"
    data = await resp.read()
    assert len(data) == job["size_bytes"]
    return zipfile.ZipFile(io.BytesIO(data))


async def check_content(
    client: AppClient, archive: zipfile.ZipFile, x: User, y: User, z: User, match: dict[str, Any]
) -> None:
    names = set(archive.namelist())
    cid = match["conversation_id"]
    assert EXPECTED_FILES | {f"conversations/{cid}.json"} <= names
    photos = sorted(n for n in names if n.startswith("photos/"))
    assert len(photos) == 2
    listed = (await (await client.get("/me/photos", headers=x.headers)).json())["items"]
    for name, photo in zip(photos, listed, strict=True):
        stored = await (await client.get(photo["url"], headers=x.headers)).read()
        assert archive.read(name) == stored and photo["photo_id"] in name
    everything = b"".join(archive.read(n) for n in names if not n.startswith("photos/"))
    assert y.user_id.encode() not in everything and z.user_id.encode() not in everything
    assert b"export format version 1" in archive.read("README.txt")
    account = orjson.loads(archive.read("account.json"))
    assert account["user_id"] == x.user_id and "@example.com" in account["email"]
    profile = orjson.loads(archive.read("profile.json"))
    assert profile["profile"]["display_name"] == "Exporter" and len(profile["photos"]) == 2
    assert all("object_key" not in p for p in profile["photos"])
    matches = orjson.loads(archive.read("matches.json"))
    assert [m["match_id"] for m in matches] == [match["match_id"]]
    partner = matches[0]["other"]
    assert partner.startswith("person-")
    conversation = orjson.loads(archive.read(f"conversations/{cid}.json"))
    assert conversation["other"] == partner
    assert [(m["from"], m["text"]) for m in conversation["messages"]] == [
        ("you", "hello from x"),
        (partner, "hello from y"),
    ]
    likes = orjson.loads(archive.read("likes.json"))
    actions = sorted((like["other"] == partner, like["action"]) for like in likes["likes"])
    assert actions == [(False, "pass"), (True, "like")] and likes["blocks"] == []
    reports = orjson.loads(archive.read("reports.json"))
    assert [(r["reason"], r["details"]) for r in reports] == [("spam", "links")]
    assert reports[0]["about"] != partner and reports[0]["about"].startswith("person-")
    assert orjson.loads(archive.read("sessions.json"))["sessions"] == []


async def test_export_on_the_local_store(client: AppClient, settings: Settings, pg: asyncpg.Connection) -> None:
    x, y, z, match = await active_people(client)
    resp = await client.post("/me/export", json={"password": "not the password"}, headers=x.headers)
    assert resp.status == 401
    job = await export_ready(client, x)
    archive = await download(client, x, job)
    await check_content(client, archive, x, y, z, match)
    stored = photos_dir(settings) / "exports" / f"{job['id']}.zip"
    assert stored.exists()

    # Only the owner: another user's id is 404, for the status and the file.
    assert (await client.get(f"/me/export/{job['id']}", headers=y.headers)).status == 404
    assert (await client.get(job["download_url"], headers=y.headers)).status == 404
    assert (await client.get(job["download_url"])).status == 401

    # One export per 24 hours.
    resp = await client.post("/me/export", json={"password": PASSWORD}, headers=x.headers)
    assert resp.status == 429 and 0 < int(resp.headers["Retry-After"]) <= 24 * 3600

    # Expiry deletes the file and the job.
    await pg.execute("UPDATE data_exports SET expires_at = now() - interval '1 second'")
    await client.app[keys.CLEANUP].run_once()
    assert not stored.exists()
    assert (await client.get(f"/me/export/{job['id']}", headers=x.headers)).status == 404
    assert await pg.fetchval("SELECT count(*) FROM data_exports") == 0


async def test_a_failed_export_is_reported_and_does_not_count(
    client: AppClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = await sign_up(client)
    store = client.app[keys.PHOTO_STORE]

    async def broken(*args: object) -> None:
        raise OSError("storage is down")

    monkeypatch.setattr(store, "put_file", broken)
    resp = await client.post("/me/export", json={"password": PASSWORD}, headers=x.headers)
    assert resp.status == 202
    export_id = (await resp.json())["id"]
    await client.app[keys.EXPORT].wait_idle()
    job = await (await client.get(f"/me/export/{export_id}", headers=x.headers)).json()
    assert job["status"] == "failed" and "download_url" not in job
    monkeypatch.undo()
    assert (await export_ready(client, x))["status"] == "ready"


async def test_export_on_s3(make_client: MakeClient, s3_endpoint: str, pg: asyncpg.Connection) -> None:  # noqa: F811
    client = await make_client(s3_endpoint_url=s3_endpoint, s3_bucket=S3_BUCKET, **S3_CREDENTIALS)
    x, y, z, match = await active_people(client)
    job = await export_ready(client, x)
    key = f"exports/{job['id']}.zip"
    s3 = s3_client(s3_endpoint)
    assert s3.head_object(Bucket=S3_BUCKET, Key=key)["ContentLength"] == job["size_bytes"]
    await check_content(client, await download(client, x, job), x, y, z, match)
    assert (await client.get(job["download_url"], headers=y.headers)).status == 404
    await pg.execute("UPDATE data_exports SET expires_at = now() - interval '1 second'")
    await client.app[keys.CLEANUP].run_once()
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket=S3_BUCKET, Key=key)


async def test_a_large_file_goes_up_in_parts(s3_endpoint: str, tmp_path: Path) -> None:  # noqa: F811
    path = tmp_path / "big.zip"
    data = secrets.token_bytes(UPLOAD_PART_BYTES + 1234)
    path.write_bytes(data)
    async with contextlib.AsyncExitStack() as stack:
        store = await open_s3_store(
            stack,
            endpoint_url=s3_endpoint,
            bucket=S3_BUCKET,
            region="us-east-1",
            access_key_id="testing",
            secret_access_key="testing",
        )
        await store.put_file("exports/big.zip", path, "application/zip")
        chunks = await store.open("exports/big.zip")
        assert b"".join([c async for c in chunks]) == data
    head = s3_client(s3_endpoint).head_object(Bucket=S3_BUCKET, Key="exports/big.zip")
    assert head["ETag"].strip('"').endswith("-2")  # a multipart upload of two parts
