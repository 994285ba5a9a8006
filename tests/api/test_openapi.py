"""GET /openapi.json: a valid OpenAPI 3.1 document that names every route,
and real responses that match its schemas."""

from __future__ import annotations

import re
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from aiohttp import hdrs
from openapi_spec_validator import validate

from config.settings import Settings
from proximity_server import create_app
from proximity_server.app.openapi import document
from tests.auth_helpers import ACCOUNT_OVERRIDES, access, register
from tests.conftest import AppClient
from tests.helpers import bearer, new_token, open_session

SKIPPED_METHODS = {hdrs.METH_HEAD, hdrs.METH_OPTIONS}
WEBSOCKET_PATHS = {"/ws", "/ws/{ble_token}"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(**ACCOUNT_OVERRIDES)


def app_routes(settings: Settings) -> set[tuple[str, str]]:
    app = create_app(settings)
    found = set()
    for route in app.router.routes():
        if route.method in SKIPPED_METHODS or route.resource is None:
            continue
        path = route.resource.canonical
        found.add((route.method.lower(), path))
    return found


def test_every_route_is_documented(settings: Settings) -> None:
    paths = document()["paths"]
    routes = app_routes(settings)
    assert routes, "no routes found"
    missing = sorted(f"{method.upper()} {path}" for method, path in routes if method not in paths.get(path, {}))
    assert not missing, f"routes missing from proximity_server/app/openapi.py: {missing}"
    extra = sorted(
        f"{method.upper()} {path}" for path, ops in paths.items() for method in ops if (method, path) not in routes
    )
    assert not extra, f"documented but not routed: {extra}"
    for path in WEBSOCKET_PATHS:
        assert "x-websocket" in paths[path]["get"], path


def test_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1.")
    validate(doc)


def test_path_parameters_match_the_templates() -> None:
    for path, ops in document()["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for method, op in ops.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, f"{method.upper()} {path}"


def test_operations_have_ids_and_error_responses() -> None:
    ids = []
    for ops in document()["paths"].values():
        for op in ops.values():
            ids.append(op["operationId"])
            assert any(code.startswith("2") or code == "101" for code in op["responses"])
            if op.get("security") and op["security"] != [{}]:
                assert "401" in op["responses"], op["operationId"]
            if "requestBody" in op and "application/json" in op["requestBody"]["content"]:
                assert {"400", "415"} <= set(op["responses"]), op["operationId"]
    assert len(ids) == len(set(ids))


def schema_validator(ref: dict[str, Any]) -> jsonschema.Draft202012Validator:
    doc = document()
    schema = {**ref, "components": doc["components"]}
    return jsonschema.Draft202012Validator(schema)


def response_schema(path: str, method: str, status: int) -> dict[str, Any]:
    response = document()["paths"][path][method]["responses"][str(status)]
    if "$ref" in response:
        name = response["$ref"].rsplit("/", 1)[-1]
        response = document()["components"]["responses"][name]
    schema: dict[str, Any] = response["content"]["application/json"]["schema"]
    return schema


async def check(resp: Any, path: str, method: str) -> Any:
    body = await resp.json()
    schema_validator(response_schema(path, method, resp.status)).validate(body)
    return body


async def test_served_without_credentials(client: AppClient) -> None:
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert await resp.json() == document()


async def test_real_responses_match_the_document(client: AppClient) -> None:
    await check(await client.get("/livez"), "/livez", "get")
    await check(await client.get("/health"), "/health", "get")
    token = new_token()
    resp = await client.post("/session", json={"ble_token": token, "interests": ["devops"]})
    await check(resp, "/session", "post")
    other, _ = await open_session(client, ["kubernetes"])
    resp = await client.post("/session", json={"ble_token": token, "interests": ["devops"], "x": 1})
    assert resp.status == 400
    await check(resp, "/session", "post")
    resp = await client.post("/match", json={"own_token": token, "detected_token": other}, headers=bearer("nope"))
    assert resp.status == 401
    await check(resp, "/match", "post")

    pair = await register(client)
    resp = await client.get("/me", headers=access(pair))
    await check(resp, "/me", "get")
    profile = {
        "display_name": "Ada",
        "birthdate": "1995-05-05",
        "gender": "woman",
        "interested_in": ["man"],
        "location": {"lat": 52.5, "lon": 13.4},
    }
    resp = await client.put("/me/profile", json=profile, headers=access(pair))
    await check(resp, "/me/profile", "put")
    resp = await client.get("/discover", headers=access(pair))
    await check(resp, "/discover", "get")
    resp = await client.get("/discover?bogus=1", headers=access(pair))
    assert resp.status == 400
    await check(resp, "/discover", "get")
    for path in ("/matches", "/conversations", "/me/photos"):
        await check(await client.get(path, headers=access(pair)), path, "get")
    resp = await client.get(f"/profiles/{pair['user_id']}", headers=access(pair))
    await check(resp, "/profiles/{user_id}", "get")
    resp = await client.get("/stats", headers=bearer("wrong"))
    assert resp.status == 403
    await check(resp, "/stats", "get")
