"""The Starlette application of rsched's REST API.

Owns: ``create_app`` (routes, middleware, error handlers) and the lifespan that connects
the Engine, Client and archive pool onto ``app.state.api``. Must not: implement an
endpoint (api/routes/ does) or open a second path to Redis (everything goes through
the Engine it holds).

Extending: a new surface (dashboard, /metrics) adds its ``ROUTES`` to ``route_table``
and reads ``app.state.api`` (an ``api.http.ApiState``) for the engine and client.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import dashboard, metrics, openapi
from api.http import ApiState
from api.problems import ApiError, problem
from api.routes import jobs, ops, runs
from rsched.client import Client
from rsched.clock import Clock, SyncedClock
from rsched.engine import Engine
from rsched.settings import Settings

log = logging.getLogger(__name__)


class BodyLimit:
    """413 for a body over ``max_bytes``: at once from Content-Length, else while read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise self._error()
            return message

        await self.app(scope, limited, send)

    def _error(self) -> ApiError:
        return ApiError(413, "Content Too Large", f"body over {self.max_bytes} bytes")

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await problem(self._error(), scope.get("path"))(scope, receive, send)


def route_table() -> list[BaseRoute]:
    """The /api/v1 routes (and health): what the OpenAPI document describes."""
    return [*jobs.ROUTES, *runs.ROUTES, *ops.ROUTES, *openapi.ROUTES]


def app_routes() -> list[BaseRoute]:
    """Everything the app serves: the API, /metrics and the dashboard at /."""
    return [*route_table(), *metrics.ROUTES, *dashboard.ROUTES]


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    title = {404: "Not Found", 405: "Method Not Allowed"}.get(status, "Error")
    return problem(ApiError(status, title, str(getattr(exc, "detail", ""))), request.url.path)


async def _open_archive(settings: Settings) -> AsyncConnectionPool[Any] | None:
    if not (settings.api.history and settings.archiver.dsn):
        return None
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        settings.archiver.dsn, min_size=1, max_size=4, open=False,
        kwargs={"autocommit": True}, timeout=5.0)
    await pool.open(wait=False)  # the API serves Redis data while PostgreSQL is down
    return pool


def create_app(settings: Settings, *, engine: Engine | None = None,
               clock: Clock | None = None) -> Starlette:
    """The API app. With ``engine`` the caller owns it (tests); else the lifespan connects
    one from ``settings`` and closes it at shutdown."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        eng = engine or await Engine.connect(settings)
        clk = clock or SyncedClock(eng.clock())
        archive = await _open_archive(settings)
        app.state.api = ApiState(settings, eng, Client(eng, clk), clk, archive)
        if settings.api.dev_mode:
            log.warning("API in dev mode: no API keys, every caller is tenant 'default', admin")
        try:
            yield
        finally:
            if archive is not None:
                await archive.close()
            if engine is None:
                await eng.close()

    return Starlette(
        routes=app_routes(), lifespan=lifespan,
        middleware=[Middleware(BodyLimit, max_bytes=settings.api.max_body_bytes)],
        exception_handlers={HTTPException: _http_error, Exception: _http_error})


def app_from_env() -> Starlette:
    """uvicorn factory (``rsched api``): settings from the environment."""
    return create_app(Settings.from_env(env_file=".env"))
