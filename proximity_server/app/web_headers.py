"""Headers of the web app's pages and files: the Content-Security-Policy and
their own Cache-Control.

The request-context middleware gives every response the API's security
headers and ``Cache-Control: no-store``; a web handler marks its request with
:func:`mark_web_response`, and this ``on_response_prepare`` hook then adds the
CSP and puts the handler's caching policy back.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
WEB_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
WEB_CACHE_CONTROL: Final = web.RequestKey("web_cache_control", str)


def mark_web_response(request: web.Request, cache_control: str) -> None:
    request[WEB_CACHE_CONTROL] = cache_control


async def apply_web_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: one dict lookup for an API response."""
    cache_control = request.get(WEB_CACHE_CONTROL)
    if cache_control is None:
        return
    response.headers.update(WEB_HEADERS)
    response.headers["Cache-Control"] = cache_control
