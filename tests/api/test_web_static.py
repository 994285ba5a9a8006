"""The web app's files: /, /docs and /static/{path} with strong ETags, 304s,
gzip, the right types, the CSP, and nothing outside the folder."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
from yarl import URL

from config.settings import Settings
from proximity_server.app.web_headers import CONTENT_SECURITY_POLICY
from proximity_server.app.webapp import accepts_gzip, etag_matches, safe_relative
from tests.conftest import AppClient, MakeClient

INDEX = "<!doctype html><title>app</title>" + "<!-- padding -->" * 40
SCRIPT = "export const hello = () => 'hello';\n" * 40
FILES = {
    "index.html": INDEX,
    "docs.html": "<!doctype html><title>docs</title>",
    "static/app.js": SCRIPT,
    "static/app.css": "body { color: black; }\n" * 30,
    "static/icon.svg": "<svg xmlns='http://www.w3.org/2000/svg'></svg>",
    "static/data.json": '{"a": 1}',
    "static/vendor/lib.js": "export default 1;\n",
    "static/.hidden.js": "secret",
}
BINARY = {"static/logo.png": b"\x89PNG\r\n\x1a\n" + b"\0" * 600, "static/font.woff2": b"wOF2" + b"\1" * 600}
OUTSIDE = "secret outside the static folder"


@pytest.fixture
def web_root(tmp_path: Path) -> Path:
    root = tmp_path / "web"
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for name, data in BINARY.items():
        (root / name).write_bytes(data)
    (tmp_path / "outside.txt").write_text(OUTSIDE)
    (root / "static" / "link.txt").symlink_to(tmp_path / "outside.txt")
    (root / "static" / "empty-dir").mkdir()
    return root


@pytest.fixture
def settings(settings: Settings, web_root: Path) -> Settings:
    return settings.with_overrides(web_root=web_root)


@pytest.fixture
async def client(make_client: MakeClient) -> AppClient:
    return await make_client()


def assert_web_headers(headers: object) -> None:
    assert isinstance(headers, dict) or hasattr(headers, "get")
    assert headers.get("Content-Security-Policy") == CONTENT_SECURITY_POLICY  # type: ignore[attr-defined]
    assert headers.get("Referrer-Policy") == "no-referrer"  # type: ignore[attr-defined]
    assert headers.get("X-Content-Type-Options") == "nosniff"  # type: ignore[attr-defined]


async def test_index_is_served_with_csp_etag_and_no_cache(client: AppClient) -> None:
    resp = await client.get("/", auto_decompress=False, headers={"Accept-Encoding": "identity"})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert await resp.text() == INDEX
    assert_web_headers(resp.headers)
    assert resp.headers["Cache-Control"] == "no-cache"
    etag = resp.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    assert resp.headers["X-Request-ID"]
    assert CONTENT_SECURITY_POLICY == (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )


async def test_if_none_match_gives_304(client: AppClient) -> None:
    first = await client.get("/static/app.js", headers={"Accept-Encoding": "identity"})
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "public, max-age=0, must-revalidate"
    for presented in (etag, f'"other", {etag}', f"W/{etag}", "*"):
        resp = await client.get("/static/app.js", headers={"If-None-Match": presented, "Accept-Encoding": "identity"})
        assert resp.status == 304, presented
        assert await resp.read() == b""
        assert resp.headers["ETag"] == etag
        assert_web_headers(resp.headers)
    other = await client.get("/static/app.js", headers={"If-None-Match": '"nope"'})
    assert other.status == 200


async def test_gzip_when_accepted_for_text(client: AppClient) -> None:
    resp = await client.get("/static/app.js", auto_decompress=False, headers={"Accept-Encoding": "br, gzip"})
    assert resp.status == 200
    assert resp.headers["Content-Encoding"] == "gzip"
    assert resp.headers["Vary"] == "Accept-Encoding"
    assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8"
    packed = await resp.read()
    assert gzip.decompress(packed).decode() == SCRIPT
    assert len(packed) < len(SCRIPT)
    plain = await client.get("/static/app.js", auto_decompress=False, headers={"Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in plain.headers
    assert (await plain.read()).decode() == SCRIPT
    assert plain.headers["ETag"] != resp.headers["ETag"]  # one strong ETag per representation
    again = await client.get(
        "/static/app.js", headers={"Accept-Encoding": "gzip", "If-None-Match": plain.headers["ETag"]}
    )
    assert again.status == 304
    png = await client.get("/static/logo.png", auto_decompress=False, headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in png.headers  # images are not compressed again


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/app.js", "text/javascript; charset=utf-8"),
        ("/static/vendor/lib.js", "text/javascript; charset=utf-8"),
        ("/static/app.css", "text/css; charset=utf-8"),
        ("/static/icon.svg", "image/svg+xml"),
        ("/static/data.json", "application/json"),
        ("/static/logo.png", "image/png"),
        ("/static/font.woff2", "font/woff2"),
        ("/docs", "text/html; charset=utf-8"),
    ],
)
async def test_content_types_and_headers(client: AppClient, path: str, content_type: str) -> None:
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == content_type
    assert_web_headers(resp.headers)


async def raw_get(client: AppClient, raw_path: str) -> tuple[int, str]:
    """Send the path as written (no client-side normalisation of ``..``)."""
    url = URL(str(client.make_url("/")).rstrip("/") + raw_path, encoded=True)
    async with client.session.get(url) as resp:
        return resp.status, await resp.text()


@pytest.mark.parametrize(
    "raw_path",
    [
        "/static/../index.html",
        "/static/%2e%2e/index.html",
        "/static/..%2findex.html",
        "/static/..%5c..%5coutside.txt",
        "/static/%2e%2e/%2e%2e/outside.txt",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/.hidden.js",
        "/static/vendor/../../index.html",
        "/static/link.txt",
        "/static/empty-dir",
        "/static/app.js%00.png",
        "/static/missing.js",
    ],
)
async def test_nothing_outside_the_folder(client: AppClient, raw_path: str) -> None:
    status, text = await raw_get(client, raw_path)
    assert status == 404, raw_path
    assert OUTSIDE not in text and INDEX not in text and "secret" not in text


async def test_unknown_is_a_404_json_envelope(client: AppClient) -> None:
    resp = await client.get("/static/nope.js")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"


async def test_an_edited_file_is_served_fresh(client: AppClient, web_root: Path) -> None:
    first = await client.get("/static/data.json")
    path = web_root / "static" / "data.json"
    path.write_text('{"a": 2, "b": 3}')
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = await client.get("/static/data.json")
    assert await second.json() == {"a": 2, "b": 3}
    assert second.headers["ETag"] != first.headers["ETag"]


async def test_a_missing_index_is_404(make_client: MakeClient, tmp_path: Path) -> None:
    client = await make_client(web_root=tmp_path / "empty")
    resp = await client.get("/")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"


async def test_api_responses_keep_their_headers_without_the_csp(client: AppClient) -> None:
    resp = await client.get("/livez")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["Cache-Control"] == "no-store"
    assert "Content-Security-Policy" not in resp.headers


def test_safe_relative() -> None:
    assert str(safe_relative("vendor/lib.js")) == "vendor/lib.js"
    for bad in ("", "/etc/passwd", "../x", "a/../b", "a//b", ".env", "a/.git/config", "a\\b", "a\0b", "./a"):
        assert safe_relative(bad) is None, bad


def test_accept_encoding_and_if_none_match() -> None:
    assert accepts_gzip("gzip, deflate") and accepts_gzip("*") and accepts_gzip("GZIP;q=0.5")
    assert not accepts_gzip(None) and not accepts_gzip("br") and not accepts_gzip("gzip;q=0")
    assert etag_matches('W/"a", "b"', ('"a"',)) and not etag_matches('"c"', ('"a"', '"b"'))
