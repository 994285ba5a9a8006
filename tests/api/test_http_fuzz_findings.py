"""HTTP inputs that fuzzing once showed coming back as 500 ``internal``: text
reaching PostgreSQL unchecked (a NUL character, an integer beyond int8), an
``Authorization`` header whose bytes are not UTF-8, a body whose
``Content-Encoding`` does not decode. Each must be refused with a 4xx and the
JSON error envelope."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from config.settings import Settings
from proximity_server.app.http import MAX_JSON_BODY_BYTES
from proximity_server.app.middlewares import error_envelope
from tests.auth_helpers import ACCOUNT_OVERRIDES, TEST_PASSWORD, new_email
from tests.chat_helpers import matched_pair, person
from tests.conftest import AppClient
from tests.helpers import open_session

INT8_OVERFLOW = 2**63


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(**ACCOUNT_OVERRIDES)


async def assert_refused(resp: Any) -> None:
    body = await resp.json()
    assert resp.status == 400, (resp.status, body)


async def test_register_with_nul_in_email(client: AppClient) -> None:
    resp = await client.post("/auth/register", json={"email": "a\x00b@example.com", "password": TEST_PASSWORD})
    await assert_refused(resp)


async def test_report_with_nul_in_details(client: AppClient) -> None:
    a, b, _ = await matched_pair(client)
    resp = await client.post(
        "/reports", json={"user_id": b.user_id, "reason": "spam", "details": "x\x00"}, headers=a.auth
    )
    await assert_refused(resp)


@pytest.mark.parametrize("body", [{"client_id": "a\x00b", "text": "hi"}, {"client_id": "c1", "text": "h\x00i"}])
async def test_send_message_with_nul(client: AppClient, body: dict[str, str]) -> None:
    a, _, match = await matched_pair(client)
    resp = await client.post(f"/conversations/{match['conversation_id']}/messages", json=body, headers=a.auth)
    await assert_refused(resp)


async def test_mark_read_beyond_int8(client: AppClient) -> None:
    a, _, match = await matched_pair(client)
    resp = await client.post(
        f"/conversations/{match['conversation_id']}/read", json={"up_to": INT8_OVERFLOW}, headers=a.auth
    )
    await assert_refused(resp)


async def test_messages_before_beyond_int8(client: AppClient) -> None:
    a, _, match = await matched_pair(client)
    resp = await client.get(
        f"/conversations/{match['conversation_id']}/messages?before={INT8_OVERFLOW}", headers=a.auth
    )
    await assert_refused(resp)


# --- headers whose bytes are not UTF-8 (clients encode headers, so raw bytes go over a socket)

NOT_UTF8_CREDENTIAL = b"Bearer \xff\xfe\xc3("
WS_HANDSHAKE = (
    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


async def raw_exchange(client: AppClient, head: str, extra_header: bytes, body: bytes = b"") -> tuple[int, Any]:
    """Send one request as raw bytes; returns its status and JSON body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        request = (
            head.encode()
            + b"Host: localhost\r\nConnection: close\r\n"
            + extra_header
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        writer.write(request)
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    status_line, _, rest = reply.partition(b"\r\n")
    headers, _, payload = rest.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in headers.lower(), reply
    return int(status_line.split()[1]), orjson.loads(payload)


def assert_envelope(status: int, body: Any, expected: int) -> None:
    assert status == expected, (status, body)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body


@pytest.mark.parametrize(
    "head",
    [
        "GET /me HTTP/1.1\r\n",
        "GET /matches HTTP/1.1\r\n",
        "GET /discover HTTP/1.1\r\n",
        "GET /stats HTTP/1.1\r\n",
        "GET /metrics HTTP/1.1\r\n",
        "PUT /me/profile HTTP/1.1\r\nContent-Type: application/json\r\n",
        "POST /likes HTTP/1.1\r\nContent-Type: application/json\r\n",
    ],
)
async def test_authorization_not_utf8_is_401(client: AppClient, head: str) -> None:
    status, body = await raw_exchange(client, head, b"Authorization: " + NOT_UTF8_CREDENTIAL + b"\r\n", b"{}")
    assert_envelope(status, body, 401)


async def test_session_refresh_with_credential_not_utf8_is_401(client: AppClient) -> None:
    token, _ = await open_session(client, ["music"])
    body = orjson.dumps({"ble_token": token, "interests": ["music"]})
    status, reply = await raw_exchange(
        client,
        "POST /session HTTP/1.1\r\nContent-Type: application/json\r\n",
        b"Authorization: " + NOT_UTF8_CREDENTIAL + b"\r\n",
        body,
    )
    assert_envelope(status, reply, 401)


async def test_user_socket_handshake_with_authorization_not_utf8_is_401(client: AppClient) -> None:
    status, body = await raw_exchange(
        client, "GET /ws HTTP/1.1\r\n" + WS_HANDSHAKE, b"Authorization: " + NOT_UTF8_CREDENTIAL + b"\r\n"
    )
    assert_envelope(status, body, 401)


async def test_proximity_socket_handshake_with_authorization_not_utf8_is_401(client: AppClient) -> None:
    token, _ = await open_session(client, ["music"])
    status, body = await raw_exchange(
        client, f"GET /ws/{token} HTTP/1.1\r\n" + WS_HANDSHAKE, b"Authorization: " + NOT_UTF8_CREDENTIAL + b"\r\n"
    )
    assert_envelope(status, body, 401)


async def test_valid_credential_still_accepted_over_a_raw_socket(client: AppClient) -> None:
    """The raw-socket helper itself is sound: the same request with a real token is 200."""
    me = await person(client)
    status, body = await raw_exchange(client, "GET /me HTTP/1.1\r\n", f"Authorization: Bearer {me.token}\r\n".encode())
    assert status == 200, body


# --- bodies whose Content-Encoding does not decode


def register_body() -> bytes:
    return orjson.dumps({"email": new_email(), "password": TEST_PASSWORD})


async def post_encoded(client: AppClient, body: bytes, coding: str) -> tuple[int, Any]:
    resp = await client.post(
        "/auth/register",
        data=body,
        headers={"Content-Type": "application/json", "Content-Encoding": coding},
    )
    return resp.status, await resp.json()


@pytest.mark.parametrize("coding", ["gzip", "deflate", "GZIP"])
async def test_body_that_does_not_decode_is_400(client: AppClient, coding: str) -> None:
    status, body = await post_encoded(client, b"not compressed at all", coding)
    assert_envelope(status, body, 400)


async def test_truncated_gzip_body_is_400(client: AppClient) -> None:
    status, body = await post_encoded(client, gzip.compress(register_body())[:-12], "gzip")
    assert_envelope(status, body, 400)


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip, gzip", "made-up"])
async def test_unsupported_content_encoding_is_415(client: AppClient, coding: str) -> None:
    status, body = await post_encoded(client, register_body(), coding)
    assert_envelope(status, body, 415)


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data, wbits=-zlib.MAX_WBITS)),
        ("identity", lambda data: data),
    ],
)
async def test_encoded_body_that_decodes_is_accepted(client: AppClient, coding: str, encode: Any) -> None:
    status, body = await post_encoded(client, encode(register_body()), coding)
    assert status == 201, body


async def test_body_that_decodes_past_the_limit_is_413(client: AppClient) -> None:
    bomb = gzip.compress(b" " * (MAX_JSON_BODY_BYTES * 4) + b"{}")
    assert len(bomb) < MAX_JSON_BODY_BYTES
    status, body = await post_encoded(client, bomb, "gzip")
    assert_envelope(status, body, 413)


async def test_encoded_photo_upload_is_415(client: AppClient) -> None:
    me = await person(client)
    resp = await client.post(
        "/me/photos",
        data=gzip.compress(b"--x\r\n\r\n--x--\r\n"),
        headers={**me.auth, "Content-Type": "multipart/form-data; boundary=x", "Content-Encoding": "gzip"},
    )
    assert_envelope(resp.status, await resp.json(), 415)


async def _body_broke_off(request: web.Request) -> web.Response:
    raise RequestPayloadError("Not enough data to satisfy transfer length header.")


async def test_unreadable_body_is_400_through_the_error_middleware(aiohttp_client: Any) -> None:
    app = web.Application(middlewares=[error_envelope])
    app.router.add_post("/", _body_broke_off)
    client = await aiohttp_client(app)
    resp = await client.post("/", data=b"{}")
    assert_envelope(resp.status, await resp.json(), 400)
