"""The dashboard's session and its calls into the API.

Owns: the session cookie (the API key, HttpOnly, SameSite=Strict), the CSRF defence of
the dashboard's POSTs (same-origin Origin/Referer check plus a per-session token bound to
the cookie by HMAC), and ``call``: running an /api/v1 endpoint in-process with the
session's key, so the dashboard gets the API's auth, rate limits, roles and tenant checks
with no second path to Redis. Must not: render HTML or decide what a page shows.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any
from urllib.parse import urlparse

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message

from api.http import state
from api.problems import ApiError

COOKIE = "rsched_key"
CSRF_HEADER = "x-csrf-token"
_SECRET = secrets.token_bytes(32)  # per process: tokens end with it (a reload gets a new one)
_DROP = {b"authorization", b"x-api-key", b"idempotency-key", b"content-length",
         b"content-type", b"if-match"}


def session_id(request: Request) -> str | None:
    """The key in the cookie, "dev" in dev mode, None when logged out."""
    if state(request).settings.api.dev_mode:
        return "dev"
    return request.cookies.get(COOKIE) or None


def csrf_token(request: Request) -> str:
    sid = session_id(request) or ""
    return hmac.new(_SECRET, sid.encode(), hashlib.sha256).hexdigest()


def same_origin(request: Request) -> bool:
    """Origin (or, without it, Referer) names this host: a cross-site form or fetch
    cannot pass, whatever the cookie's SameSite does in that browser."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    src = urlparse(source)
    return (src.scheme, src.netloc) == (request.url.scheme, request.url.netloc)


def check_post(request: Request, *, token: bool = True) -> None:
    if not same_origin(request):
        raise ApiError(403, "Forbidden", "cross-site request refused (Origin mismatch)")
    sent = request.headers.get(CSRF_HEADER, "")
    if token and not hmac.compare_digest(sent, csrf_token(request)):
        raise ApiError(403, "Forbidden", "missing or stale CSRF token: reload the page")


def set_cookie(request: Request, response: Response, key: str | None) -> None:
    if key is None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return
    response.set_cookie(COOKIE, key, path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", max_age=12 * 3600)


def _endpoint(path: str, method: str) -> Any:
    from api.app import route_table  # the API's own table: the handlers the API serves

    for route in route_table():
        if isinstance(route, Route) and route.path == path and method in (route.methods or ()):
            return route.endpoint
    raise LookupError(f"{method} {path}")


async def call(request: Request, method: str, path: str, params: dict[str, str] | None = None,
               query: str = "", body: Any = None) -> tuple[int, Any]:
    """(status, decoded JSON) of the API endpoint ``method path`` (its template, e.g.
    "/api/v1/jobs/{job_id}") called with the session's key."""
    headers = [(k, v) for k, v in request.scope["headers"] if k not in _DROP]
    sid = session_id(request)
    if sid and sid != "dev":
        headers.append((b"authorization", b"Bearer " + sid.encode()))
    raw = b"" if body is None else msgspec.json.encode(body)
    if raw:
        headers.append((b"content-type", b"application/json"))
    scope = {**request.scope, "method": method, "headers": headers, "path_params": params or {},
             "query_string": query.encode(), "path": path}

    async def receive() -> Message:
        return {"type": "http.request", "body": raw, "more_body": False}

    response: Response = await _endpoint(path, method)(Request(scope, receive))
    data = msgspec.json.decode(bytes(response.body)) if response.body else None
    return response.status_code, data
