"""GET /docs: the packaged API reference page and its files load under the CSP."""

from __future__ import annotations

import re

from proximity_server.app.web_headers import CONTENT_SECURITY_POLICY
from proximity_server.app.webapp import PACKAGE_WEB_ROOT
from tests.conftest import AppClient

ASSET = re.compile(r'(?:src|href)="(/static/[^"]+)"')


async def test_docs_page_and_its_files_load(client: AppClient) -> None:
    page = await client.get("/docs")
    assert page.status == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    html = await page.text()
    assets = ASSET.findall(html)
    assert "/static/docs.js" in assets and "/static/docs.css" in assets
    for asset in assets:
        resp = await client.get(asset)
        assert resp.status == 200, asset
        assert resp.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    script = await client.get("/static/docs.js")
    assert script.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert "/openapi.json" in await script.text()
    spec = await client.get("/openapi.json")
    assert spec.status == 200 and "/docs" in (await spec.json())["paths"]


def test_docs_page_has_nothing_the_csp_would_block() -> None:
    html = (PACKAGE_WEB_ROOT / "docs.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script"
    assert "<style" not in html and " style=" not in html, "inline style"
    assert not re.search(r"\son\w+=", html), "inline event handler"
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", html), "a file from elsewhere"
    script = (PACKAGE_WEB_ROOT / "static" / "docs.js").read_text()
    assert "innerHTML" not in script and "eval(" not in script
