"""Fixtures of the API tests: the app on a real redis-server (a private key prefix per
test), httpx clients per API key, and a worker to make runs happen."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from api.app import create_app
from rsched.engine import Engine
from rsched.models import Role
from rsched.settings import Settings


def api_settings(redis_url: str, prefix: str, **api: Any) -> Settings:
    over = {"redis.url": redis_url, "redis.prefix": prefix, "redis.shards": 4,
            "archiver.dsn": "", "api.rate_per_s": 10_000.0, "api.burst": 10_000}
    over.update({f"api.{k}": v for k, v in api.items()})
    return Settings.from_env(environ={}, overrides=over)


class Api:
    """One app on one engine; ``client(tenant, role)`` makes a keyed httpx client."""

    def __init__(self, app: Starlette, engine: Engine) -> None:
        self.app = app
        self.engine = engine
        self.transport = httpx.ASGITransport(app=app)

    async def key(self, tenant: str = "acme", role: Role = Role.WRITE) -> str:
        _, token = await self.engine.access.create_key(tenant, role, 1)
        return token

    async def client(self, tenant: str = "acme", role: Role = Role.WRITE) -> httpx.AsyncClient:
        return self.anonymous({"Authorization": f"Bearer {await self.key(tenant, role)}"})

    def anonymous(self, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transport, base_url="http://test",
                                 headers=headers)


@pytest.fixture
async def make_api(make_engine: Callable[..., Any], redis_url: str, prefix: str
                   ) -> AsyncIterator[Callable[..., Any]]:
    stack: list[Any] = []

    async def make(**api: Any) -> Api:
        engine = await make_engine()
        app = create_app(api_settings(redis_url, prefix, **api), engine=engine)
        life = app.router.lifespan_context(app)
        await life.__aenter__()
        stack.append(life)
        return Api(app, engine)

    yield make
    for life in reversed(stack):
        await life.__aexit__(None, None, None)


@pytest.fixture
async def api(make_api: Callable[..., Any]) -> Api:
    made: Api = await make_api()
    return made


async def all_pages(c: Any, path: str, query: str = "", limit: int = 2
                    ) -> tuple[list[Any], list[str]]:
    """Every item of a cursor-paged listing, page by page: (items, cursors)."""
    seen: list[Any] = []
    cursors: list[str] = []
    cursor = None
    while True:
        q = f"?limit={limit}" + (f"&{query}" if query else "") + (
            f"&cursor={cursor}" if cursor else "")
        page = (await c.get(f"{path}{q}")).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen, cursors
        cursors.append(cursor)


async def all_run_pages(c: Any, job_id: str, limit: int = 2) -> tuple[list[Any], list[str]]:
    """Every run of a job through GET /jobs/{id}/runs, page by page: (runs, cursors)."""
    return await all_pages(c, f"/api/v1/jobs/{job_id}/runs", limit=limit)
