"""Photos: upload (sniffed, cleaned, resized), order, delete, serve; local and S3 stores."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import boto3
import pytest
from moto.server import ThreadedMotoServer
from PIL import ExifTags, Image

from config.settings import Settings, photos_dir
from proximity_server.app import state as keys
from proximity_server.features import photos as photos_module
from proximity_server.features.photo_urls import FULL, THUMB, PhotoUrls, derive_key, photo_url_key
from proximity_server.features.photos import MAX_UPLOAD_BYTES, clean_image, sniff_format
from tests.conftest import AppClient, MakeClient
from tests.profile_helpers import (
    ACCOUNT_SETTINGS,
    User,
    image_bytes,
    profile_body,
    sign_up,
    upload,
    upload_form,
    with_profile,
)
from tests.servers import free_port

S3_BUCKET = "photos-test"
S3_CREDENTIALS = {"s3_access_key_id": "testing", "s3_secret_access_key": "testing", "s3_region": "us-east-1"}


@pytest.fixture
def settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings.with_overrides(**ACCOUNT_SETTINGS, data_dir=tmp_path_factory.mktemp("data"))


@pytest.fixture
async def client(make_client: MakeClient) -> AppClient:
    return await make_client()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API on loopback (moto's server mode), with a bucket."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        s3_client(endpoint).create_bucket(Bucket=S3_BUCKET)
        yield endpoint
    finally:
        server.stop()


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def gps_jpeg(size: tuple[int, int] = (120, 80)) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "SpyCam"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (52.0, 31.0, 12.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (13.0, 24.0, 18.0)
    out = io.BytesIO()
    Image.new("RGB", size, (10, 120, 40)).save(out, format="JPEG", exif=exif.tobytes())
    return out.getvalue()


def stored_files(settings: Settings) -> list[Path]:
    root = photos_dir(settings)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def fetch(client: AppClient, user: User, url: str) -> tuple[int, str, bytes]:
    resp = await client.get(url, headers=user.headers)
    return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


async def test_upload_serves_clean_resized_photo_and_thumbnail(client: AppClient) -> None:
    alice = await sign_up(client)
    bob = await sign_up(client)
    photo = await upload(client, alice, image_bytes("JPEG", (3000, 1000)))
    assert set(photo) == {"photo_id", "url", "thumb_url", "position"}
    assert photo["position"] == 0
    assert photo["url"].startswith(f"/photos/{photo['photo_id']}?exp=")
    assert photo["thumb_url"].startswith(f"/photos/{photo['photo_id']}/thumb?exp=")
    assert "&sig=" in photo["url"] and "&sig=" in photo["thumb_url"]
    status, content_type, data = await fetch(client, bob, photo["url"])  # any signed-in user
    assert status == 200 and content_type == "image/jpeg"
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "JPEG" and img.size == (2048, 683)
    status, content_type, data = await fetch(client, alice, photo["thumb_url"])
    assert status == 200 and content_type == "image/jpeg"
    with Image.open(io.BytesIO(data)) as img:
        assert max(img.size) == 320


async def test_png_and_webp_keep_their_type(client: AppClient) -> None:
    user = await sign_up(client)
    for fmt, content_type in (("PNG", "image/png"), ("WEBP", "image/webp")):
        photo = await upload(client, user, image_bytes(fmt))
        status, served_type, data = await fetch(client, user, photo["url"])
        assert status == 200 and served_type == content_type
        assert sniff_format(data) == fmt


async def test_exif_and_gps_are_stripped(client: AppClient, settings: Settings) -> None:
    original = gps_jpeg()
    with Image.open(io.BytesIO(original)) as img:
        assert img.getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the fixture really carries a position
    user = await sign_up(client)
    photo = await upload(client, user, original)
    for url in (photo["url"], photo["thumb_url"]):
        status, _, data = await fetch(client, user, url)
        assert status == 200
        with Image.open(io.BytesIO(data)) as img:
            assert not img.getexif()
            assert "exif" not in img.info
        assert b"Exif\x00\x00" not in data and b"SpyCam" not in data
    stored = stored_files(settings)
    assert len(stored) == 2
    for path in stored:
        assert b"SpyCam" not in path.read_bytes() and b"Exif\x00\x00" not in path.read_bytes()


async def test_wrong_type_is_415(client: AppClient) -> None:
    user = await sign_up(client)
    fake = b"<html>definitely not a jpeg</html>" * 10
    resp = await client.post("/me/photos", data=upload_form(fake), headers=user.headers)
    assert resp.status == 415
    assert (await resp.json())["error"]["code"] == "unsupported_media_type"
    gif = io.BytesIO()
    Image.new("RGB", (10, 10)).save(gif, format="GIF")
    resp = await client.post("/me/photos", data=upload_form(gif.getvalue()), headers=user.headers)
    assert resp.status == 415
    resp = await client.post("/me/photos", json={"file": "x"}, headers=user.headers)
    assert resp.status == 415


async def test_truncated_image_is_400(client: AppClient) -> None:
    user = await sign_up(client)
    data = image_bytes("PNG", (200, 200))
    resp = await client.post("/me/photos", data=upload_form(data[:60]), headers=user.headers)
    assert resp.status == 400


async def test_over_10_mb_is_413(client: AppClient) -> None:
    user = await sign_up(client)
    big = b"\xff\xd8\xff" + b"\0" * MAX_UPLOAD_BYTES
    resp = await client.post("/me/photos", data=upload_form(big), headers=user.headers)
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "too_large"
    assert (await client.get("/me/photos", headers=user.headers)).status == 200


async def test_over_10_mb_without_content_length_is_413(client: AppClient) -> None:
    user = await sign_up(client)

    async def body() -> Any:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
        for _ in range(11):
            yield b"\xff" * (1024 * 1024)
        yield b"\r\n--b--\r\n"

    headers = {**user.headers, "Content-Type": "multipart/form-data; boundary=b"}
    resp = await client.post("/me/photos", data=body(), headers=headers)
    assert resp.status == 413


async def test_decompression_bomb_is_refused(client: AppClient) -> None:
    bomb = io.BytesIO()
    Image.new("1", (9000, 9000)).save(bomb, format="PNG")  # 81 megapixels in a few kilobytes
    assert len(bomb.getvalue()) < 100_000
    user = await sign_up(client)
    resp = await client.post("/me/photos", data=upload_form(bomb.getvalue()), headers=user.headers)
    assert resp.status == 413
    huge = io.BytesIO()
    Image.new("1", (15000, 15000)).save(huge, format="PNG")  # over twice Pillow's limit: its own error
    resp = await client.post("/me/photos", data=upload_form(huge.getvalue()), headers=user.headers)
    assert resp.status == 413
    assert (await (await client.get("/me/photos", headers=user.headers)).json())["items"] == []


def test_clean_image_runs_without_the_loop() -> None:
    clean = clean_image(image_bytes("PNG", (4000, 10)))
    assert (clean.width, clean.height) == (2048, 5)


async def test_seventh_photo_is_409(client: AppClient) -> None:
    user = await sign_up(client)
    for position in range(6):
        assert (await upload(client, user))["position"] == position
    resp = await client.post("/me/photos", data=upload_form(image_bytes()), headers=user.headers)
    assert resp.status == 409
    assert len((await (await client.get("/me/photos", headers=user.headers)).json())["items"]) == 6


async def test_reorder_and_delete(client: AppClient, settings: Settings) -> None:
    user = await sign_up(client)
    ids = [(await upload(client, user))["photo_id"] for _ in range(3)]
    new_order = [ids[2], ids[0], ids[1]]
    resp = await client.put("/me/photos/order", json=new_order, headers=user.headers)
    assert resp.status == 200, await resp.text()
    assert [p["photo_id"] for p in (await resp.json())["items"]] == new_order
    for bad in ([ids[0], ids[1]], [*ids, ids[0]], [ids[0], ids[0], ids[1]], {"ids": ids}, ["nope"]):
        resp = await client.put("/me/photos/order", json=bad, headers=user.headers)
        assert resp.status == 400, bad

    assert len(stored_files(settings)) == 6
    resp = await client.delete(f"/me/photos/{ids[2]}", headers=user.headers)
    assert resp.status == 204
    items = (await (await client.get("/me/photos", headers=user.headers)).json())["items"]
    assert [(p["photo_id"], p["position"]) for p in items] == [(ids[0], 0), (ids[1], 1)]
    assert len(stored_files(settings)) == 4  # its objects are gone
    assert (await client.get(f"/photos/{ids[2]}", headers=user.headers)).status == 404
    assert (await client.delete(f"/me/photos/{ids[2]}", headers=user.headers)).status == 404
    assert (await upload(client, user))["position"] == 2


async def test_other_users_photos_are_unreachable_on_my_routes(client: AppClient) -> None:
    alice = await sign_up(client)
    mallory = await sign_up(client)
    theirs = (await upload(client, alice))["photo_id"]
    mine = (await upload(client, mallory))["photo_id"]
    assert (await client.delete(f"/me/photos/{theirs}", headers=mallory.headers)).status == 404
    resp = await client.put("/me/photos/order", json=[theirs], headers=mallory.headers)
    assert resp.status == 404
    resp = await client.put("/me/photos/order", json=[mine, theirs], headers=mallory.headers)
    assert resp.status == 404
    items = (await (await client.get("/me/photos", headers=alice.headers)).json())["items"]
    assert [p["photo_id"] for p in items] == [theirs]
    assert (await fetch(client, alice, f"/photos/{theirs}"))[0] == 200


async def test_photos_need_a_signed_in_user(client: AppClient, pg: asyncpg.Connection) -> None:
    alice = await sign_up(client)
    bob = await sign_up(client)
    photo = await upload(client, alice)
    # Without a bearer token or a signature (signed URLs: see the tests below).
    assert (await client.get(f"/photos/{photo['photo_id']}")).status == 401
    assert (await client.get(f"/photos/{photo['photo_id']}/thumb")).status == 401
    assert (await client.post("/me/photos", data=upload_form(image_bytes()))).status == 401
    assert (await fetch(client, bob, "/photos/not-a-uuid"))[0] == 404
    assert (await fetch(client, bob, "/photos/00000000-0000-0000-0000-000000000000"))[0] == 404
    await pg.execute("UPDATE users SET deleted_at = now() WHERE id = $1", alice.user_id)
    assert (await fetch(client, bob, photo["url"]))[0] == 404
    assert (await client.get(photo["url"])).status == 404  # a signed URL outlives no account


async def test_s3_store(make_client: MakeClient, s3_endpoint: str, settings: Settings) -> None:
    client = await make_client(s3_endpoint_url=s3_endpoint, s3_bucket=S3_BUCKET, **S3_CREDENTIALS)
    user = await sign_up(client)
    photo = await upload(client, user, gps_jpeg((2500, 2500)))
    s3 = s3_client(s3_endpoint)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=S3_BUCKET, Prefix=f"{user.user_id}/").get("Contents", [])}
    assert keys == {f"{user.user_id}/{photo['photo_id']}", f"{user.user_id}/{photo['photo_id']}.thumb"}
    stored = s3.get_object(Bucket=S3_BUCKET, Key=f"{user.user_id}/{photo['photo_id']}")
    assert stored["ContentType"] == "image/jpeg"
    assert b"SpyCam" not in stored["Body"].read()
    status, content_type, data = await fetch(client, user, photo["url"])
    assert status == 200 and content_type == "image/jpeg"
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (2048, 2048) and not img.getexif()
    status, _, thumb = await fetch(client, user, photo["thumb_url"])
    assert status == 200 and max(Image.open(io.BytesIO(thumb)).size) == 320
    assert stored_files(settings) == []  # nothing went to the local directory
    assert (await client.delete(f"/me/photos/{photo['photo_id']}", headers=user.headers)).status == 204
    left = s3.list_objects_v2(Bucket=S3_BUCKET, Prefix=f"{user.user_id}/").get("Contents", [])
    assert left == []


async def test_decoding_runs_on_the_image_threads(client: AppClient, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []

    def recording(data: bytes) -> photos_module.CleanImage:
        threads.append(threading.current_thread().name)
        return clean_image(data)

    monkeypatch.setattr(photos_module, "clean_image", recording)
    user = await sign_up(client)
    await upload(client, user)
    assert len(threads) == 1 and threads[0].startswith("images")
    assert threads[0] != threading.current_thread().name


async def test_photo_reads_do_not_use_up_the_api_rate_limit(make_client: MakeClient) -> None:
    client = await make_client(rate_limit_api_per_minute=5)
    user = await sign_up(client)
    photo = await upload(client, user)  # 1 counted call
    for _ in range(20):  # a discovery page shows many photos
        resp = await client.get(photo["thumb_url"], headers=user.headers)
        assert resp.status == 200
    for _ in range(4):
        assert (await client.get("/me", headers=user.headers)).status == 200  # calls 2..5
    limited = await client.get("/me", headers=user.headers)
    assert limited.status == 429 and "Retry-After" in limited.headers


async def test_me_shows_the_profile_with_its_photos_in_order(client: AppClient) -> None:
    """GET /me reads account, profile and photos in one query: all three must come back right."""
    user = await with_profile(client)
    ids = [(await upload(client, user))["photo_id"] for _ in range(3)]
    new_order = [ids[1], ids[2], ids[0]]
    assert (await client.put("/me/photos/order", json=new_order, headers=user.headers)).status == 200
    body = await (await client.get("/me", headers=user.headers)).json()
    assert body["user_id"] == user.user_id and body["email"].endswith("@example.com")
    assert body["profile"]["display_name"] == profile_body()["display_name"]
    assert [(p["photo_id"], p["position"]) for p in body["profile"]["photos"]] == [
        (photo_id, position) for position, photo_id in enumerate(new_order)
    ]
# Signed URLs: an <img> loads a photo without a bearer header.


def _split(url: str) -> tuple[str, dict[str, str]]:
    path, _, query = url.partition("?")
    return path, dict(part.split("=", 1) for part in query.split("&"))


async def _anonymous(client: AppClient, url: str) -> tuple[int, Any]:
    resp = await client.get(url)
    body = await resp.read()
    return resp.status, body if resp.content_type != "application/json" else await resp.json()


async def test_signed_urls_load_without_a_bearer_token(client: AppClient) -> None:
    user = await sign_up(client)
    photo = await upload(client, user, image_bytes("PNG", (800, 600)))
    for url, edge in ((photo["url"], 800), (photo["thumb_url"], 320)):
        resp = await client.get(url)
        assert resp.status == 200, await resp.text()
        assert resp.headers["Cache-Control"].startswith("private")
        with Image.open(io.BytesIO(await resp.read())) as img:
            assert max(img.size) == edge
    # The own list, the profile and the public view carry signed URLs too.
    listed = (await (await client.get("/me/photos", headers=user.headers)).json())["items"][0]
    assert (await client.get(listed["thumb_url"])).status == 200


async def test_a_changed_signature_is_403(client: AppClient) -> None:
    user = await sign_up(client)
    photo = await upload(client, user)
    path, query = _split(photo["url"])
    flipped = ("0" if query["sig"][0] != "0" else "1") + query["sig"][1:]
    for bad in (
        f"{path}?exp={query['exp']}&sig={flipped}",
        f"{path}?exp={int(query['exp']) + 1}&sig={query['sig']}",  # a later expiry, same signature
        f"{path}?exp={query['exp']}&sig=",
        f"{path}?exp={query['exp']}",
        f"{path}?sig={query['sig']}",
        f"{path}?exp=-1&sig={query['sig']}",
        f"{path}?exp={query['exp']}&sig={query['sig'][:-2]}",
    ):
        status, body = await _anonymous(client, bad)
        assert status == 403, bad
        assert body["error"]["code"] == "forbidden"
    # A bad signature is refused even alongside a good bearer token.
    resp = await client.get(f"{path}?exp={query['exp']}&sig={flipped}", headers=user.headers)
    assert resp.status == 403


async def test_a_signature_for_another_photo_or_variant_is_403(client: AppClient) -> None:
    user = await sign_up(client)
    first, second = await upload(client, user), await upload(client, user)
    _, query = _split(first["url"])
    _, thumb_query = _split(first["thumb_url"])
    for bad in (
        f"/photos/{second['photo_id']}?exp={query['exp']}&sig={query['sig']}",
        f"/photos/{first['photo_id']}/thumb?exp={query['exp']}&sig={query['sig']}",
        f"/photos/{first['photo_id']}?exp={thumb_query['exp']}&sig={thumb_query['sig']}",
    ):
        status, body = await _anonymous(client, bad)
        assert status == 403, bad
        assert body["error"]["code"] == "forbidden"


async def test_an_expired_signature_is_403(client: AppClient) -> None:
    user = await sign_up(client)
    photo = await upload(client, user)
    assert client.app is not None
    urls = client.app[keys.PHOTOS].urls
    expired = urls.url(photo["photo_id"], FULL, expires=int(time.time()) - 1)
    status, body = await _anonymous(client, expired)
    assert status == 403 and body["error"]["code"] == "forbidden"
    fresh = urls.url(photo["photo_id"], FULL, expires=int(time.time()) + 60)
    assert (await client.get(fresh)).status == 200


async def test_no_signature_and_no_token_is_still_401(client: AppClient) -> None:
    user = await sign_up(client)
    photo = await upload(client, user)
    status, body = await _anonymous(client, f"/photos/{photo['photo_id']}")
    assert status == 401 and body["error"]["code"] == "unauthorized"


def test_every_process_derives_the_same_key_from_the_jwt_key() -> None:
    jwt_key = b"j" * 40
    a = PhotoUrls(photo_url_key(None, jwt_key), 3600, clock=lambda: 1_000_000.0)
    b = PhotoUrls(photo_url_key(None, jwt_key), 3600, clock=lambda: 1_000_000.0)
    assert a.url("p", FULL) == b.url("p", FULL)
    assert derive_key(jwt_key) != jwt_key and len(derive_key(jwt_key)) == 32
    other = PhotoUrls(photo_url_key("s" * 32, jwt_key), 3600, clock=lambda: 1_000_000.0)
    assert other.url("p", FULL) != a.url("p", FULL)
    with pytest.raises(ValueError, match="PHOTO_URL_SECRET"):
        photo_url_key("short", jwt_key)


def test_expiry_is_at_least_the_ttl_and_stable_for_a_while() -> None:
    now = [1_000_000.0]
    urls = PhotoUrls(b"k" * 32, 3600, clock=lambda: now[0])
    first = urls.expiry()
    assert now[0] + 3600 <= first < now[0] + 3600 + 900
    now[0] += 1
    assert urls.expiry() == first  # the same URL, so browsers can cache the image
    path, query = _split(urls.url("p", THUMB))
    assert path == "/photos/p/thumb"
    assert urls.valid("p", THUMB, query["exp"], query["sig"])
    assert urls.valid("p", THUMB, query["exp"], query["sig"].upper())
    assert not urls.valid("p", FULL, query["exp"], query["sig"])
    now[0] = int(query["exp"]) + 1.0
    assert not urls.valid("p", THUMB, query["exp"], query["sig"])


def test_photo_url_settings(tmp_path: Path) -> None:
    secret_file = tmp_path / "photo_secret"
    secret_file.write_text("f" * 40 + "\n")
    settings = Settings.from_env({"PHOTO_URL_SECRET_FILE": str(secret_file), "PHOTO_URL_TTL_SECONDS": "60"})
    assert settings.photo_url_secret == "f" * 40
    assert settings.photo_url_ttl_seconds == 60
    assert Settings.from_env({}).photo_url_ttl_seconds == 3600
    assert "f" * 40 not in repr(settings)
