"""The OpenAPI 3.1 description of every HTTP route, built once as a dict.

Served by ``GET /openapi.json`` (handlers/openapi.py). WebSocket routes are
listed with an ``x-websocket`` marker; their frames are described in the text.
tests/api/test_openapi.py fails when a route in routes.py is missing here.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final

from proximity_server.app.web_headers import CONTENT_SECURITY_POLICY
from proximity_server.app.webapp import CONTENT_TYPES, DEFAULT_CONTENT_TYPE
from proximity_server.features.assessment import ITEM_IDS, SCALE_MAX, SCALE_MIN
from proximity_server.features.compatibility import STYLES, VALUE_CHOICES

OPENAPI_VERSION: Final = "3.1.0"

Schema = dict[str, Any]

UUID: Final[Schema] = {"type": "string", "format": "uuid"}
DATETIME: Final[Schema] = {"type": "string", "format": "date-time"}
ROTATE_DESCRIPTION: Final = (
    "Authenticated with the session's secret, as /match. The old token keeps working for a short grace "
    "period (TOKEN_ROTATION_GRACE_SECONDS), then never matches; pairs already nudged are not nudged again; "
    "the session's sockets keep receiving nudges."
)
BLE_TOKEN: Final[Schema] = {"type": "string", "minLength": 8, "maxLength": 64, "pattern": "^[A-Za-z0-9_-]+$"}
GENDER: Final[Schema] = {"type": "string", "enum": ["woman", "man", "nonbinary"]}
CURSOR: Final[Schema] = {"type": ["string", "null"], "description": "opaque; pass back as ?cursor="}
LOCATION: Final[Schema] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["lat", "lon"],
    "properties": {
        "lat": {"type": "number", "minimum": -90, "maximum": 90},
        "lon": {"type": "number", "minimum": -180, "maximum": 180},
    },
}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict[str, Schema], required: list[str], *, closed: bool = True) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, "required": required}
    if closed:
        schema["additionalProperties"] = False
    return schema


def _page(item: str) -> Schema:
    return _obj({"items": {"type": "array", "items": ref(item)}, "next_cursor": CURSOR}, ["items", "next_cursor"])


def _json_content(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ok(description: str, schema: Schema | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description}
    if schema is not None:
        response["content"] = _json_content(schema)
    return response


ERROR_DESCRIPTIONS: Final = {
    "400": "bad JSON, a missing, unknown or wrongly typed field, or a bad parameter",
    "401": "no or bad credential",
    "403": "not allowed",
    "404": "not found",
    "409": "conflict",
    "413": "body too large",
    "415": "unsupported media type",
    "429": "rate limited (see Retry-After)",
    "503": "a backing service is down",
}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"$ref": f"#/components/responses/E{s}"} for s in statuses}


def _json_body(schema: Schema) -> dict[str, Any]:
    return {"required": True, "content": _json_content(schema)}


def _optional_json_body(schema: Schema) -> dict[str, Any]:
    """A body that may be left out (the auth cookie mode)."""
    return {"required": False, "content": _json_content({"oneOf": [schema, _obj({}, [])]})}


def _path_param(name: str, schema: Schema | None = None, description: str = "") -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}
    if description:
        param["description"] = description
    return param


def _query(name: str, schema: Schema, description: str = "") -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        param["description"] = description
    return param


def _op(
    op_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    security: list[dict[str, list[str]]] | None = None,
    body: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    tags: list[str] | None = None,
    description: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "responses": responses}
    if tags:
        op["tags"] = tags
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = body
    op["security"] = security if security is not None else []
    op.update(extra)
    return op


USER: Final[list[dict[str, list[str]]]] = [{"accessToken": []}]
PASSWORD_BODY: Final[Schema] = _obj(
    {"password": {"type": "string", "description": "your current password"}}, ["password"]
)
LIMIT_100: Final = _query("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20})
CURSOR_Q: Final = _query("cursor", {"type": "string"}, "a next_cursor from a previous page")
ROUTE_UNKNOWN_ID: Final = (400, 401, 404, 429, 503)
WEB_DESCRIPTION: Final = (
    "Served with a strong ETag (304 on If-None-Match), gzip for text when accepted, and "
    "`Content-Security-Policy: " + CONTENT_SECURITY_POLICY + "`."
)
SIGNED_URL_PARAMS: Final = (
    _query("exp", {"type": "integer"}, "expiry of a signed URL (unix seconds)"),
    _query("sig", {"type": "string", "pattern": "^[0-9a-f]{64}$"}, "signature of a signed URL"),
)
SIGNED_URL_DESCRIPTION: Final = (
    "Send a bearer access token, or use the signed `url`/`thumb_url` from an authenticated reply "
    "(valid PHOTO_URL_TTL_SECONDS, default an hour): `exp` and `sig` = hex HMAC-SHA256 of "
    '"photo:{id}:{full|thumb}:{exp}". A changed, expired or misapplied signature is 403.'
)
COOKIE_MODE_HEADER: Final = {
    "name": "X-Refresh-Cookie",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "enum": ["1"]},
    "description": "web app mode: the refresh token travels in the HttpOnly px_refresh cookie "
    "(Path=/auth, SameSite=Strict) instead of the JSON body",
}
COOKIE_MODE_DESCRIPTION: Final = (
    "With `X-Refresh-Cookie: 1` (the web app), the reply has no `refresh_token`; it is set as the cookie "
    "`px_refresh` (HttpOnly, SameSite=Strict, Path=/auth, Secure unless plain HTTP to a loopback host). "
    "CSRF: the cookie is SameSite=Strict and scoped to /auth, and is only honoured with the custom header, "
    "which a cross-site form cannot send and a cross-origin fetch can only send after a CORS preflight "
    "that only ALLOWED_ORIGINS pass."
)
TAKES_COOKIE_DESCRIPTION: Final = (
    COOKIE_MODE_DESCRIPTION + " In that mode send no body (or `{}`): the token comes from the cookie. "
    "A px_refresh cookie without the header (and no body token) is refused: 403 `csrf`."
)


def _schemas() -> dict[str, Schema]:
    profile_props: dict[str, Schema] = {
        "display_name": {"type": "string", "minLength": 1, "maxLength": 50},
        "birthdate": {"type": "string", "format": "date", "description": "ISO date; 18 or older"},
        "gender": GENDER,
        "interested_in": {"type": "array", "minItems": 1, "items": GENDER},
        "bio": {"type": ["string", "null"], "maxLength": 500},
        "interests": {"type": "array", "maxItems": 20, "items": {"type": "string", "minLength": 1, "maxLength": 64}},
        "location": {"oneOf": [LOCATION, {"type": "null"}]},
        **PREFERENCE_PROPS,
    }
    photo = _obj(
        {
            "photo_id": UUID,
            "url": {"type": "string", "description": "signed: /photos/{id}?exp=…&sig=…, loads without a token"},
            "thumb_url": {"type": "string", "description": "signed: /photos/{id}/thumb?exp=…&sig=…"},
            "position": {"type": "integer"},
        },
        ["photo_id", "url", "thumb_url", "position"],
        closed=False,
    )
    photo_ref = _obj(
        {"photo_id": UUID, "url": {"type": "string"}, "thumb_url": {"type": "string"}},
        ["photo_id", "url", "thumb_url"],
        closed=False,
    )
    person = _obj(
        {
            "user_id": UUID,
            "display_name": {"type": ["string", "null"], "description": "null until they create a profile"},
            "age": {"type": ["integer", "null"], "minimum": 0, "description": "null until they create a profile"},
            "photo": {
                "oneOf": [ref("PhotoRef"), {"type": "null"}],
                "description": "their first photo (thumb_url for the card), or null when they have none",
            },
        },
        ["user_id", "display_name", "age", "photo"],
        closed=False,
    )
    message = _obj(
        {
            "id": {"type": "integer"},
            "conversation_id": UUID,
            "sender_id": UUID,
            "client_id": {"type": "string"},
            "text": {"type": "string"},
            "created_at": DATETIME,
        },
        ["id", "conversation_id", "sender_id", "text", "created_at"],
        closed=False,
    )
    return {
        "Error": _obj(
            {
                "error": _obj(
                    {"code": {"type": "string", "examples": ["invalid_field"]}, "message": {"type": "string"}},
                    ["code", "message"],
                )
            },
            ["error"],
        ),
        "SessionRequest": _obj(
            {
                "ble_token": BLE_TOKEN,
                "interests": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 20,
                    "items": {"type": "string", "minLength": 1, "maxLength": 64},
                },
            },
            ["ble_token", "interests"],
        ),
        "Session": _obj({"session_id": {"type": "string"}, "expires_at": DATETIME}, ["session_id", "expires_at"]),
        "MatchRequest": _obj({"own_token": BLE_TOKEN, "detected_token": BLE_TOKEN}, ["own_token", "detected_token"]),
        "RotateRequest": _obj({"own_token": BLE_TOKEN, "new_token": BLE_TOKEN}, ["own_token", "new_token"]),
        "RotateResult": _obj({"expires_at": {"type": "string", "format": "date-time"}}, ["expires_at"]),
        "MatchResult": _obj(
            {
                "match": {"type": "boolean"},
                "shared_interests": {"type": "array", "items": {"type": "string"}},
                "nudge_sent": {"type": "boolean"},
            },
            ["match", "shared_interests", "nudge_sent"],
        ),
        "Stats": _obj(
            {
                "total_sessions_today": {"type": "integer", "minimum": 0},
                "total_matches_today": {"type": "integer", "minimum": 0},
                "top_interest_categories": {"type": "array", "items": {"type": "string"}},
                "active_sessions_now": {"type": "integer", "minimum": 0},
            },
            ["total_sessions_today", "total_matches_today", "top_interest_categories", "active_sessions_now"],
            closed=False,
        ),
        "Health": _obj(
            {
                "status": {"type": "string", "enum": ["ok", "unavailable"]},
                "checks": {"type": "object", "additionalProperties": {"type": "string", "enum": ["ok", "down"]}},
            },
            ["status", "checks"],
        ),
        "Live": _obj({"status": {"const": "ok"}}, ["status"]),
        "Credentials": _obj(
            {"email": {"type": "string", "format": "email"}, "password": {"type": "string", "minLength": 10}},
            ["email", "password"],
        ),
        "RefreshRequest": _obj({"refresh_token": {"type": "string"}}, ["refresh_token"]),
        "TokenPair": _obj(
            {
                "user_id": UUID,
                "access_token": {"type": "string", "description": "HS256 JWT, valid 15 minutes"},
                "refresh_token": {
                    "type": "string",
                    "description": "absent with X-Refresh-Cookie: 1 (then it is in the px_refresh cookie)",
                },
                "expires_in": {"type": "integer"},
            },
            ["user_id", "access_token", "expires_in"],
        ),
        "ProfilePut": _obj(profile_props, ["display_name", "birthdate", "gender", "interested_in"]),
        "ProfilePatch": _obj(profile_props, []),
        "Profile": {
            "type": "object",
            "description": "your own profile, with age, photos and updated_at",
            "properties": {
                **profile_props,
                "age": {"type": "integer"},
                "photos": {"type": "array", "items": ref("Photo")},
            },
        },
        "Me": _obj(
            {
                "user_id": UUID,
                "email": {"type": "string"},
                "created_at": DATETIME,
                "profile": {"oneOf": [ref("Profile"), {"type": "null"}]},
            },
            ["user_id", "email", "created_at", "profile"],
            closed=False,
        ),
        "PublicProfile": _obj(
            {
                "user_id": UUID,
                "display_name": {"type": "string"},
                "age": {"type": "integer"},
                "gender": GENDER,
                "bio": {"type": ["string", "null"]},
                "interests": {"type": "array", "items": {"type": "string"}},
                "photos": {"type": "array", "items": ref("Photo")},
                "distance_km": {"type": ["integer", "null"], "minimum": 1},
                "compatibility": {
                    "oneOf": [ref("Compatibility"), {"type": "null"}],
                    "description": "seen from you; null on your own profile",
                },
            },
            ["user_id", "display_name"],
            closed=False,
        ),
        "DiscoverPage": _page("PublicProfile"),
        "ExportJob": _obj(
            {
                "id": UUID,
                "status": {"type": "string", "enum": ["pending", "running", "ready", "failed"]},
                "created_at": DATETIME,
                "download_url": {"type": "string", "description": "when ready: GET it with your access token"},
                "expires_at": DATETIME,
                "size_bytes": {"type": "integer", "minimum": 0},
            },
            ["id", "status"],
        ),
        "Photo": photo,
        "PhotoList": _obj({"items": {"type": "array", "items": ref("Photo")}}, ["items"]),
        "PhotoOrder": {"type": "array", "maxItems": 6, "items": UUID, "description": "exactly your photo ids"},
        "LikeRequest": _obj(
            {"user_id": UUID, "action": {"type": "string", "enum": ["like", "pass"]}}, ["user_id", "action"]
        ),
        "LikeResult": _obj({"matched": {"type": "boolean"}, "match_id": UUID, "conversation_id": UUID}, ["matched"]),
        "Person": person,
        "PhotoRef": photo_ref,
        "Match": _obj(
            {"match_id": UUID, "conversation_id": UUID, "created_at": DATETIME, "user": ref("Person")},
            ["match_id", "conversation_id", "created_at", "user"],
            closed=False,
        ),
        "MatchPage": _page("Match"),
        "BlockRequest": _obj({"user_id": UUID}, ["user_id"]),
        "ReportRequest": _obj(
            {
                "user_id": UUID,
                "reason": {
                    "type": "string",
                    "enum": [
                        "spam",
                        "harassment",
                        "inappropriate_content",
                        "fake_profile",
                        "underage",
                        "scam",
                        "other",
                    ],
                },
                "details": {"type": "string", "maxLength": 2000},
            },
            ["user_id", "reason"],
        ),
        "Report": _obj({"report_id": UUID}, ["report_id"]),
        "Message": message,
        "MessagePage": _page("Message"),
        "SendMessage": _obj(
            {
                "client_id": {"type": "string", "minLength": 1, "maxLength": 64},
                "text": {"type": "string", "minLength": 1, "maxLength": 4000},
            },
            ["client_id", "text"],
        ),
        "Conversation": _obj(
            {
                "conversation_id": UUID,
                "match_id": UUID,
                "created_at": DATETIME,
                "last_activity_at": DATETIME,
                "user": ref("Person"),
                "last_message": {"oneOf": [ref("Message"), {"type": "null"}]},
                "unread_count": {"type": "integer", "minimum": 0},
            },
            ["conversation_id", "user"],
            closed=False,
        ),
        "ConversationPage": _page("Conversation"),
        "ReadRequest": _obj({"up_to": {"type": "integer", "minimum": 1}}, ["up_to"]),
        "ReadMark": _obj(
            {"conversation_id": UUID, "last_read_message_id": {"type": ["integer", "null"]}},
            ["conversation_id", "last_read_message_id"],
            closed=False,
        ),
    }


WS_PROXIMITY_DESCRIPTION: Final = (
    "WebSocket upgrade (x-websocket). Subprotocol `proximity.json` (JSON text frames, default) or "
    "`proximity.msgpack` (msgpack binary frames). Server events: `nudge`. Client commands: "
    '`{"type": "ping", "id": 1}` answered by `{"type": "result", "id": 1, "ok": true, "result": {"pong": true}}`. '
    "A bad frame gets an `error` frame (or a failed `result`); five close the socket with 1008. "
    "Close codes: 1001 shutdown, 1008 repeated bad frames, 1009 frame over 16 KiB, 4008 slow reader, "
    "4410 session expired."
)
WS_USER_DESCRIPTION: Final = (
    "WebSocket upgrade (x-websocket) carrying every event of the signed-in user. The access token comes "
    "in the Authorization header, `?access_token=`, or an `auth` frame within 10 seconds. Commands: "
    "`auth`, `send_message`, `typing`, `read`, `resume`, `refresh`, `ping`, each answered by one `result`. "
    "Bad frames get error frames; five close with 1008; frames over 64 KiB close with 1009; an expired "
    "or revoked credential closes with 4401; a reader too slow closes with 4008. Durable events (with "
    "`event_id`) arrive in id order with no gaps; a socket that cannot keep that promise (its gap was pruned "
    "from the log, or too many events waited behind one) closes with 4009 resync: reconnect and `resume`."
)


def _web_page(op_id: str, summary: str) -> dict[str, Any]:
    return {
        "get": _op(
            op_id,
            summary,
            {
                "200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}},
                "304": {"description": "not modified (If-None-Match matched the ETag)"},
                **_errors(404),
            },
            description=WEB_DESCRIPTION,
            tags=["web"],
        )
    }


def _web_paths() -> dict[str, Any]:
    file_types = sorted({t.split(";")[0] for t in CONTENT_TYPES.values()} | {DEFAULT_CONTENT_TYPE})
    return {
        "/": _web_page("webApp", "The web app (index.html)"),
        "/docs": _web_page("apiReference", "This API reference, rendered from /openapi.json"),
        "/static/{path}": {
            "get": _op(
                "staticFile",
                "A file of the web app (scripts, styles, images, fonts)",
                {
                    "200": {
                        "description": "the file",
                        "content": {t: {"schema": {"type": "string"}} for t in file_types},
                    },
                    "304": {"description": "not modified (If-None-Match matched the ETag)"},
                    **_errors(404),
                },
                parameters=[_path_param("path", {"type": "string"}, "a path under the static folder")],
                description=WEB_DESCRIPTION,
                tags=["web"],
            )
        },
    }


def _paths() -> dict[str, Any]:
    e = _errors
    session_param = _path_param("ble_token", BLE_TOKEN)
    return {
        **_web_paths(),
        **_admin_paths(),
        "/livez": {"get": _op("livez", "Liveness (no I/O)", {"200": _ok("alive", ref("Live"))}, tags=["health"])},
        "/health": {
            "get": _op(
                "health",
                "Readiness: probes Redis, PostgreSQL and pub/sub",
                {"200": _ok("all ok", ref("Health")), "503": _ok("something is down", ref("Health"))},
                tags=["health"],
            )
        },
        "/openapi.json": {
            "get": _op(
                "openapi",
                "This document",
                {"200": _ok("the OpenAPI 3.1 document", {"type": "object"})},
                tags=["meta"],
            )
        },
        "/session": {
            "post": _op(
                "createSession",
                "Register (or refresh) a BLE token",
                {
                    "201": _ok("created", ref("Session")),
                    "200": _ok("refreshed (the same session_id)", ref("Session")),
                    **e(400, 401, 409, 413, 415, 429, 503),
                },
                body=_json_body(ref("SessionRequest")),
                security=[{}, {"sessionId": []}, {"accessToken": []}],
                description="A live token gives 409 unless the request carries that session's secret "
                "(a refresh). An access token links the session to the signed-in user.",
                tags=["proximity"],
            )
        },
        "/match": {
            "post": _op(
                "match",
                "Report a detected token",
                {"200": _ok("the decision", ref("MatchResult")), **e(400, 401, 413, 415, 503)},
                body=_json_body(ref("MatchRequest")),
                security=[{"sessionId": []}],
                tags=["proximity"],
            )
        },
        "/session/rotate": {
            "post": _op(
                "rotateToken",
                "Move the session to a new BLE token",
                {
                    "200": _ok("rotated; the secret and expiry are unchanged", ref("RotateResult")),
                    **e(400, 401, 409, 413, 415, 503),
                },
                body=_json_body(ref("RotateRequest")),
                security=[{"sessionId": []}],
                description=ROTATE_DESCRIPTION,
                tags=["proximity"],
            )
        },
        "/ws/{ble_token}": {
            "get": _op(
                "proximitySocket",
                "WebSocket: the nudge channel of a BLE token",
                {"101": {"description": "switching protocols"}, **e(400, 401, 503)},
                parameters=[
                    session_param,
                    _query("session_id", {"type": "string"}, "the session secret, for clients that cannot set headers"),
                ],
                security=[{"sessionId": []}, {"sessionIdQuery": []}],
                description=WS_PROXIMITY_DESCRIPTION,
                tags=["proximity"],
                **{"x-websocket": {"subprotocols": ["proximity.json", "proximity.msgpack"], "max_frame_bytes": 16384}},
            )
        },
        "/ws": {
            "get": _op(
                "userSocket",
                "WebSocket: the signed-in user's event socket",
                {"101": {"description": "switching protocols"}, **e(400, 401, 429, 503)},
                parameters=[_query("access_token", {"type": "string"}, "the access token, instead of the header")],
                security=[{}, {"accessToken": []}, {"accessTokenQuery": []}],
                description=WS_USER_DESCRIPTION,
                tags=["realtime"],
                **{"x-websocket": {"subprotocols": ["proximity.json", "proximity.msgpack"], "max_frame_bytes": 65536}},
            )
        },
        "/stats": {
            "get": _op(
                "stats",
                "Today's aggregates (admins)",
                {"200": _ok("aggregates", ref("Stats")), **e(401, 403, 503)},
                security=[{"adminToken": []}],
                tags=["admin"],
            )
        },
        "/metrics": {
            "get": _op(
                "metrics",
                "Prometheus metrics (admins)",
                {
                    "200": {
                        "description": "Prometheus text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **e(401, 403),
                },
                security=[{"adminToken": []}],
                tags=["admin"],
            )
        },
        "/auth/register": {
            "post": _op(
                "register",
                "Create an account",
                {"201": _ok("registered", ref("TokenPair")), **e(400, 409, 413, 415, 429, 503)},
                body=_json_body(ref("Credentials")),
                parameters=[COOKIE_MODE_HEADER],
                description=COOKIE_MODE_DESCRIPTION,
                tags=["auth"],
            )
        },
        "/auth/login": {
            "post": _op(
                "login",
                "Log in",
                {"200": _ok("logged in", ref("TokenPair")), **e(400, 401, 413, 415, 429, 503)},
                body=_json_body(ref("Credentials")),
                parameters=[COOKIE_MODE_HEADER],
                description=COOKIE_MODE_DESCRIPTION,
                tags=["auth"],
            )
        },
        "/auth/refresh": {
            "post": _op(
                "refresh",
                "Swap a refresh token for a new pair (rotation)",
                {"200": _ok("a new pair", ref("TokenPair")), **e(400, 401, 403, 413, 415, 429, 503)},
                body=_optional_json_body(ref("RefreshRequest")),
                parameters=[COOKIE_MODE_HEADER],
                description=TAKES_COOKIE_DESCRIPTION,
                tags=["auth"],
            )
        },
        "/auth/logout": {
            "post": _op(
                "logout",
                "Revoke this login",
                {
                    "204": _ok("logged out; in cookie mode the cookie is cleared"),
                    **e(400, 401, 403, 413, 415, 429, 503),
                },
                body=_optional_json_body(ref("RefreshRequest")),
                parameters=[COOKIE_MODE_HEADER],
                description=TAKES_COOKIE_DESCRIPTION,
                tags=["auth"],
            )
        },
        "/auth/logout-all": {
            "post": _op(
                "logoutAll",
                "Revoke every login of the user",
                {"204": _ok("logged out everywhere"), **e(401, 429, 503)},
                security=USER,
                tags=["auth"],
            )
        },
        "/me": {
            "get": _op(
                "me",
                "Your account and profile",
                {"200": _ok("you", ref("Me")), **e(401, 429, 503)},
                security=USER,
                tags=["profiles"],
            ),
            "delete": _op(
                "eraseMe",
                "Erase your account and its data (needs your password again)",
                {"204": _ok("erased"), **e(400, 401, 413, 415, 429, 503)},
                body=_json_body(PASSWORD_BODY),
                security=USER,
                tags=["data rights"],
                description=(
                    "Effective at once: every token is revoked and open sockets close with 4401, "
                    "proximity sessions end, the profile, photos, likes, blocks and sent messages are "
                    "deleted, matches end (the other person gets an `unmatch` event), and the email is "
                    'free again. What is kept, and why, is listed in the README ("Your data").'
                ),
            ),
        },
        "/me/profile": {
            "put": _op(
                "putProfile",
                "Create or fully replace your profile",
                {"200": _ok("the profile", ref("Profile")), **e(400, 401, 413, 415, 429, 503)},
                body=_json_body(ref("ProfilePut")),
                security=USER,
                tags=["profiles"],
            ),
            "patch": _op(
                "patchProfile",
                "Change some profile fields",
                {"200": _ok("the profile", ref("Profile")), **e(400, 401, 413, 415, 429, 503)},
                body=_json_body(ref("ProfilePatch")),
                security=USER,
                tags=["profiles"],
            ),
        },
        "/me/export": {
            "post": _op(
                "startExport",
                "Export your data (needs your password again; one per 24 hours)",
                {
                    "202": _ok("started", ref("ExportJob")),
                    **e(400, 401, 413, 415, 429, 503),
                },
                body=_json_body(PASSWORD_BODY),
                security=USER,
                tags=["data rights"],
                description=(
                    "Starts building a zip of your data in the background. A second export within "
                    "24 hours is 429 with Retry-After. Poll GET /me/export/{export_id}."
                ),
            )
        },
        "/me/export/{export_id}": {
            "get": _op(
                "exportStatus",
                "The status of one of your exports",
                {"200": _ok("the job", ref("ExportJob")), **e(401, 404, 429, 503)},
                parameters=[_path_param("export_id", UUID)],
                security=USER,
                tags=["data rights"],
            )
        },
        "/me/export/{export_id}/download": {
            "get": _op(
                "downloadExport",
                "Download a ready export (a zip; for 48 hours)",
                {
                    "200": {
                        "description": "the zip file, streamed",
                        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    **e(401, 404, 429, 503),
                },
                parameters=[_path_param("export_id", UUID)],
                security=USER,
                tags=["data rights"],
            )
        },
        "/profiles/{user_id}": {
            "get": _op(
                "publicProfile",
                "Someone's public profile",
                {"200": _ok("the public view", ref("PublicProfile")), **e(401, 404, 429, 503)},
                parameters=[_path_param("user_id", UUID)],
                security=USER,
                tags=["profiles"],
            )
        },
        "/discover": {
            "get": _op(
                "discover",
                "People who fit both ways",
                {"200": _ok("a page", ref("DiscoverPage")), **e(400, 401, 409, 429, 503)},
                parameters=[
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 50, "default": 20}),
                    CURSOR_Q,
                    _query("min_age", {"type": "integer", "minimum": 18, "maximum": 120}),
                    _query("max_age", {"type": "integer", "minimum": 18, "maximum": 120}),
                    _query("gender", GENDER),
                    _query("max_distance_km", {"type": "number", "exclusiveMinimum": 0}),
                ],
                security=USER,
                description="Unknown query parameters are 400.",
                tags=["discover"],
            )
        },
        "/me/photos": {
            "post": _op(
                "uploadPhoto",
                "Upload a photo (JPEG, PNG or WebP, at most 10 MB)",
                {"201": _ok("stored", ref("Photo")), **e(400, 401, 409, 413, 415, 429, 503)},
                body={
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["file"],
                                "properties": {
                                    "file": {"type": "string", "contentMediaType": "application/octet-stream"}
                                },
                            }
                        }
                    },
                },
                security=USER,
                tags=["photos"],
            ),
            "get": _op(
                "listPhotos",
                "Your photos",
                {"200": _ok("in order", ref("PhotoList")), **e(401, 429, 503)},
                security=USER,
                tags=["photos"],
            ),
        },
        "/me/photos/order": {
            "put": _op(
                "reorderPhotos",
                "Reorder your photos",
                {"200": _ok("the new order", ref("PhotoList")), **e(400, 401, 413, 415, 429, 503)},
                body=_json_body(ref("PhotoOrder")),
                security=USER,
                tags=["photos"],
            )
        },
        "/me/photos/{photo_id}": {
            "delete": _op(
                "deletePhoto",
                "Delete one of your photos",
                {"204": _ok("deleted"), **e(401, 404, 429, 503)},
                parameters=[_path_param("photo_id", UUID)],
                security=USER,
                tags=["photos"],
            )
        },
        "/photos/{photo_id}": {
            "get": _op(
                "photo",
                "A photo's bytes",
                {
                    "200": {
                        "description": "the image",
                        "content": {
                            m: {"schema": {"type": "string"}} for m in ("image/jpeg", "image/png", "image/webp")
                        },
                    },
                    **e(401, 403, 404, 503),
                },
                parameters=[_path_param("photo_id", UUID), *SIGNED_URL_PARAMS],
                security=[*USER, {}],
                description=SIGNED_URL_DESCRIPTION,
                tags=["photos"],
            )
        },
        "/photos/{photo_id}/thumb": {
            "get": _op(
                "photoThumb",
                "A photo's 320 px thumbnail",
                {
                    "200": {
                        "description": "the thumbnail",
                        "content": {
                            m: {"schema": {"type": "string"}} for m in ("image/jpeg", "image/png", "image/webp")
                        },
                    },
                    **e(401, 403, 404, 503),
                },
                parameters=[_path_param("photo_id", UUID), *SIGNED_URL_PARAMS],
                security=[*USER, {}],
                description=SIGNED_URL_DESCRIPTION,
                tags=["photos"],
            )
        },
        "/likes": {
            "post": _op(
                "like",
                "Like or pass on someone",
                {"200": _ok("recorded", ref("LikeResult")), **e(400, 401, 404, 409, 413, 415, 429, 503)},
                body=_json_body(ref("LikeRequest")),
                security=USER,
                tags=["likes"],
            )
        },
        "/matches": {
            "get": _op(
                "listMatches",
                "Your active matches, newest first",
                {"200": _ok("a page", ref("MatchPage")), **e(400, 401, 429, 503)},
                parameters=[LIMIT_100, CURSOR_Q],
                security=USER,
                tags=["likes"],
            )
        },
        "/matches/{match_id}": {
            "delete": _op(
                "unmatch",
                "Unmatch",
                {"204": _ok("ended"), **e(401, 404, 429, 503)},
                parameters=[_path_param("match_id", UUID)],
                security=USER,
                tags=["likes"],
            )
        },
        "/blocks": {
            "post": _op(
                "block",
                "Block someone (idempotent; also unmatches)",
                {"204": _ok("blocked"), **e(400, 401, 404, 413, 415, 429, 503)},
                body=_json_body(ref("BlockRequest")),
                security=USER,
                tags=["likes"],
            )
        },
        "/blocks/{user_id}": {
            "delete": _op(
                "unblock",
                "Unblock someone",
                {"204": _ok("unblocked"), **e(401, 404, 429, 503)},
                parameters=[_path_param("user_id", UUID)],
                security=USER,
                tags=["likes"],
            )
        },
        "/reports": {
            "post": _op(
                "report",
                "Report someone",
                {"201": _ok("filed", ref("Report")), **e(400, 401, 404, 413, 415, 429, 503)},
                body=_json_body(ref("ReportRequest")),
                security=USER,
                tags=["likes"],
            )
        },
        "/conversations": {
            "get": _op(
                "listConversations",
                "Your open conversations, most recent activity first",
                {"200": _ok("a page", ref("ConversationPage")), **e(400, 401, 429, 503)},
                parameters=[LIMIT_100, CURSOR_Q],
                security=USER,
                tags=["conversations"],
            )
        },
        "/conversations/{conversation_id}/messages": {
            "get": _op(
                "listMessages",
                "A conversation's history, newest first",
                {"200": _ok("a page", ref("MessagePage")), **e(400, 401, 404, 429, 503)},
                parameters=[
                    _path_param("conversation_id", UUID),
                    LIMIT_100,
                    CURSOR_Q,
                    _query(
                        "before",
                        {"type": "string", "examples": ["bXNnOjQx", "41"]},
                        "the next_cursor of the previous page (like `cursor`), or a message id: only messages "
                        "with a smaller id. Send `cursor` or `before`, not both.",
                    ),
                ],
                security=USER,
                tags=["conversations"],
            ),
            "post": _op(
                "sendMessage",
                "Send a message (idempotent per client_id)",
                {
                    "201": _ok("sent", ref("Message")),
                    "200": _ok("a retry: the message sent before", ref("Message")),
                    **e(400, 401, 404, 409, 413, 415, 429, 503),
                },
                parameters=[_path_param("conversation_id", UUID)],
                body=_json_body(ref("SendMessage")),
                security=USER,
                tags=["conversations"],
            ),
        },
        "/conversations/{conversation_id}/read": {
            "post": _op(
                "markRead",
                "Mark read up to a message",
                {"200": _ok("the read mark", ref("ReadMark")), **e(400, 401, 404, 413, 415, 429, 503)},
                parameters=[_path_param("conversation_id", UUID)],
                body=_json_body(ref("ReadRequest")),
                security=USER,
                tags=["conversations"],
            )
        },
    }


@cache
def document() -> dict[str, Any]:
    """The whole OpenAPI document (built once; treat as read-only)."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "proximity_server",
            "version": "1",
            "description": 'Errors are always JSON `{"error": {"code", "message"}}` with the matching status. '
            "Every response carries an `X-Request-ID`.",
        },
        "servers": [{"url": "/"}],
        "paths": {**_paths(), **_compatibility_paths()},
        "components": {
            "schemas": {**_schemas(), **_compatibility_schemas()},
            "responses": {
                f"E{status}": {"description": text, "content": _json_content(ref("Error"))}
                for status, text in ERROR_DESCRIPTIONS.items()
            },
            "securitySchemes": {
                "accessToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "an access token from /auth/register, /auth/login or /auth/refresh",
                },
                "accessTokenQuery": {"type": "apiKey", "in": "query", "name": "access_token"},
                "sessionId": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the session_id (secret) from POST /session",
                },
                "sessionIdQuery": {"type": "apiKey", "in": "query", "name": "session_id"},
                "adminToken": {"type": "http", "scheme": "bearer", "description": "the ADMIN_TOKEN setting"},
            },
        },
    }


# -- Admin console ------------------------------------------------------------

ADMIN: Final[list[dict[str, list[str]]]] = [{"accessToken": []}, {"adminToken": []}]
ADMIN_DESCRIPTION: Final = (
    "Admins only: an access token carrying the admin role (accounts listed in ADMIN_EMAILS) or the "
    "ADMIN_TOKEN. 401 without a credential, 403 for anybody else. Every action is audited."
)
_CELLS: Final = _obj(
    {
        "values": {"type": "array", "items": {"type": ["integer", "null"]}},
        "hidden": {"type": "array", "items": {"type": "boolean"}},
    },
    ["values", "hidden"],
)
_HISTORY: Final = _obj(
    {
        "granularity": {"type": "string", "enum": ["day", "hour"]},
        "from": {"type": "string", "format": "date-time"},
        "to": {"type": "string", "format": "date-time"},
        "min_count": {"type": "integer"},
        "buckets": {"type": "array", "items": {"type": "string", "format": "date-time"}},
        "series": {"type": "object", "additionalProperties": _CELLS},
        "category_sessions": {"type": "object", "additionalProperties": _CELLS},
    },
    ["granularity", "from", "to", "min_count", "buckets", "series", "category_sessions"],
)
_REPORT: Final = _obj(
    {
        "id": {"type": "string", "format": "uuid"},
        "reason": {"type": "string"},
        "details": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "status": {"type": "string", "enum": ["open", "resolved"]},
        "resolved_at": {"type": ["string", "null"]},
        "resolution": {"type": ["string", "null"]},
        "resolution_note": {"type": ["string", "null"]},
        "reporter_id": {"type": "string", "format": "uuid"},
        "reported": {"type": "object"},
        "messages": {"type": "array", "items": {"type": "object"}},
    },
    ["id", "reason", "details", "created_at", "status", "reported", "messages"],
    closed=False,
)


def _admin_op(op_id: str, summary: str, responses: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return _op(op_id, summary, responses, security=ADMIN, tags=["admin"], description=ADMIN_DESCRIPTION, **kw)


def _admin_paths() -> dict[str, Any]:
    e = _errors
    user_id = _path_param("user_id", {"type": "string", "format": "uuid"})
    return {
        "/admin/": _web_page("adminConsole", "The admin console (sign in with an admin account)"),
        "/stats/history": {
            "get": _admin_op(
                "statsHistory",
                "Aggregates over time; cells under STATS_MIN_COUNT are null and flagged hidden",
                {"200": _ok("time series", _HISTORY), **e(400, 401, 403, 503)},
                parameters=[
                    _query("from", {"type": "string"}, "ISO date or date-time (UTC), first bucket"),
                    _query("to", {"type": "string"}, "ISO date or date-time (UTC), last bucket; default now"),
                    _query("granularity", {"type": "string", "enum": ["day", "hour"], "default": "day"}),
                ],
            )
        },
        "/admin/live": {
            "get": _admin_op(
                "adminLive",
                "Server-sent events: active proximity sessions and open sockets every two seconds",
                {
                    "200": {
                        "description": "an event stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **e(401, 403),
                },
            )
        },
        "/admin/audit": {
            "get": _admin_op(
                "adminAudit",
                "The audit trail of admin actions, newest first (append-only)",
                {
                    "200": _ok(
                        "a page",
                        _obj(
                            {"entries": {"type": "array", "items": {"type": "object"}}, "next_cursor": CURSOR},
                            ["entries", "next_cursor"],
                        ),
                    ),
                    **e(400, 401, 403, 503),
                },
                parameters=[LIMIT_100, CURSOR_Q],
            )
        },
        "/admin/reports": {
            "get": _admin_op(
                "adminReports",
                "The moderation queue, oldest first",
                {
                    "200": _ok(
                        "a page",
                        _obj(
                            {"reports": {"type": "array", "items": _REPORT}, "next_cursor": CURSOR},
                            ["reports", "next_cursor"],
                        ),
                    ),
                    **e(400, 401, 403, 503),
                },
                parameters=[_query("status", {"type": "string", "enum": ["open", "resolved"]}), LIMIT_100, CURSOR_Q],
            )
        },
        "/admin/reports/{report_id}/resolve": {
            "post": _admin_op(
                "adminResolveReport",
                "Resolve a report: dismiss, warn or ban the reported person",
                {"200": _ok("resolved", {"type": "object"}), **e(400, 401, 403, 404, 409, 415, 503)},
                parameters=[_path_param("report_id", {"type": "string", "format": "uuid"})],
                body=_json_body(
                    _obj(
                        {"action": {"type": "string", "enum": ["dismiss", "warn", "ban"]}, "note": {"type": "string"}},
                        ["action", "note"],
                    )
                ),
            )
        },
        "/admin/users/{user_id}/ban": {
            "post": _admin_op(
                "adminBan",
                "Ban a person: tokens revoked, sockets closed (4403), sessions ended, profile hidden",
                {"200": _ok("banned", {"type": "object"}), **e(400, 401, 403, 404, 415, 503)},
                parameters=[user_id],
                body=_json_body(_obj({"reason": {"type": "string"}}, ["reason"])),
            ),
            "delete": _admin_op(
                "adminUnban",
                "Lift a ban (nothing was deleted; the person signs in again)",
                {"200": _ok("unbanned", {"type": "object"}), **e(400, 401, 403, 404, 415, 503)},
                parameters=[user_id],
                body=_optional_json_body(_obj({"reason": {"type": "string"}}, [])),
            ),
        },
    }


# Compatibility: values and preferences on the profile, the assessment, suggestions.
PREFERENCE_PROPS: Final[dict[str, Schema]] = {
    **{name: {"type": ["string", "null"], "enum": [*choices, None]} for name, choices in VALUE_CHOICES.items()},
    "age_min": {"type": ["integer", "null"], "minimum": 18, "maximum": 120},
    "age_max": {"type": ["integer", "null"], "minimum": 18, "maximum": 120},
    "max_distance_km": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 20000},
    "time_zone": {"type": ["string", "null"], "description": "IANA name, e.g. Europe/Berlin; default UTC"},
    "crossed_paths": {"type": "boolean", "description": "record crossed paths (default true)"},
}
COMPATIBILITY: Final[Schema] = _obj(
    {
        "score": {"type": "integer", "minimum": 0, "maximum": 100},
        "reasons": {"type": "array", "items": {"type": "string"}},
    },
    ["score", "reasons"],
)


def _compatibility_schemas() -> dict[str, Schema]:
    return {
        "AssessmentQuestions": _obj(
            {
                "scale": {"type": "object"},
                "items": {
                    "type": "array",
                    "items": _obj({"id": {"type": "string"}, "text": {"type": "string"}}, ["id", "text"]),
                },
                "result": {
                    "oneOf": [ref("AssessmentResult"), {"type": "null"}],
                    "description": "your current result; null until you take it",
                },
            },
            ["scale", "items", "result"],
        ),
        "AssessmentAnswers": _obj(
            {
                "answers": _obj(
                    {i: {"type": "integer", "minimum": SCALE_MIN, "maximum": SCALE_MAX} for i in ITEM_IDS},
                    list(ITEM_IDS),
                )
            },
            ["answers"],
        ),
        "AssessmentResult": _obj(
            {
                "anxiety": {"type": "number"},
                "avoidance": {"type": "number"},
                "style": {"type": "string", "enum": list(STYLES)},
                "insights": {"type": "array", "items": {"type": "string"}},
                "taken_at": DATETIME,
                "retake_after": DATETIME,
            },
            ["anxiety", "avoidance", "style", "insights", "taken_at", "retake_after"],
        ),
        "Compatibility": COMPATIBILITY,
        "Suggestions": _obj(
            {
                "date": {"type": "string", "format": "date", "description": "your local date"},
                "items": {"type": "array", "items": ref("PublicProfile")},
            },
            ["date", "items"],
        ),
    }


def _compatibility_paths() -> dict[str, Any]:
    e = _errors
    return {
        "/me/assessment": {
            "get": _op(
                "assessmentQuestions",
                "The attachment assessment's statements (1–7 agreement) and your current result",
                {"200": _ok("the statements", ref("AssessmentQuestions")), **e(401, 429, 503)},
                security=USER,
                tags=["compatibility"],
            ),
            "put": _op(
                "submitAssessment",
                "Answer every statement (a retake at most once a day)",
                {"200": _ok("your result", ref("AssessmentResult")), **e(400, 401, 404, 415, 429, 503)},
                body=_json_body(ref("AssessmentAnswers")),
                security=USER,
                tags=["compatibility"],
                description="A retake within 24 hours of the last one is 429 `retake_too_soon` with Retry-After.",
            ),
        },
        "/me/assessment/result": {
            "get": _op(
                "assessmentResult",
                "Your own anxiety and avoidance scores, style and insights",
                {"200": _ok("your result", ref("AssessmentResult")), **e(401, 404, 429, 503)},
                security=USER,
                tags=["compatibility"],
            )
        },
        "/suggestions": {
            "get": _op(
                "suggestions",
                "Today's suggested people, best first, each with `compatibility`",
                {"200": _ok("today's list", ref("Suggestions")), **e(401, 409, 429, 503)},
                security=USER,
                tags=["compatibility"],
                description="The same list all day in your time zone; people you acted on since drop out.",
            )
        },
    }
