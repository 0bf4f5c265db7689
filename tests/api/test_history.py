"""The archive half of GET /jobs/{id}/runs and GET /runs/{id}, against a real PostgreSQL:
runs Redis no longer holds come from the archive behind the same cursor, per tenant."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from api.app import create_app
from rsched.archive.archiver import Archiver
from rsched.engine import Engine
from rsched.settings import ArchiverSettings, Settings
from tests.api.conftest import all_run_pages
from tests.api.test_runs_ops import work

pytestmark = pytest.mark.pg
EVERY = {"type": "every", "every_ms": 3_600_000}


class History:
    def __init__(self, app: Any, engine: Engine) -> None:
        self.engine = engine
        self.transport = httpx.ASGITransport(app=app)

    async def client(self, tenant: str) -> httpx.AsyncClient:
        from rsched.models import Role

        _, token = await self.engine.access.create_key(tenant, Role.WRITE, 1)
        return httpx.AsyncClient(transport=self.transport, base_url="http://t",
                                 headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
async def history(make_engine: Any, redis_url: str, prefix: str, archive_dsn: str
                  ) -> AsyncIterator[History]:
    engine = await make_engine()
    settings = Settings.from_env(environ={}, overrides={
        "redis.url": redis_url, "redis.prefix": prefix, "redis.shards": 4,
        "archiver.dsn": archive_dsn, "api.rate_per_s": 10_000.0, "api.burst": 10_000})
    app = create_app(settings, engine=engine)
    async with app.router.lifespan_context(app):
        yield History(app, engine)


async def archive_everything(engine: Engine, dsn: str) -> None:
    archiver = Archiver(engine, ArchiverSettings(dsn=dsn, flush_s=0.0, claim_idle_s=3600),
                        engine.clock(), "test")
    await archiver.start()
    try:
        while (await archiver.tick(block_ms=None, flush=True)).events:
            pass
    finally:
        await archiver.close()


async def forget_runs(engine: Engine, run_ids: list[str], job_id: str | None = None) -> None:
    """What worker.run_ttl_s (and redis.done_job_ttl_s) do, now."""
    keys = engine.core.keys_for((job_id or run_ids[0]).split(":")[0])
    names = [keys.run(r) for r in run_ids] + ([keys.job(job_id)] if job_id else [])
    await engine.core.redis.delete(*names)


async def test_runs_page_from_redis_into_the_archive(history: History, archive_dsn: str
                                                     ) -> None:
    c = await history.client("acme")
    job = (await c.post("/api/v1/jobs", json={"task": "ok", "schedule": EVERY})).json()
    run_ids = [(await c.post(f"/api/v1/jobs/{job['id']}/run")).json()["run_id"]
               for _ in range(5)]
    await work(history, asyncio.Event())  # type: ignore[arg-type]
    await archive_everything(history.engine, archive_dsn)
    await forget_runs(history.engine, run_ids[:3])  # the three oldest left Redis

    seen, cursors = await all_run_pages(c, job["id"])
    assert [r["id"] for r in seen] == run_ids[::-1]
    assert {r["status"] for r in seen} == {"succeeded"}
    assert any(cur.startswith("a") for cur in cursors)  # it crossed into the archive
    old = (await c.get(f"/api/v1/runs/{run_ids[0]}")).json()
    assert old["id"] == run_ids[0] and old["status"] == "succeeded" and old["tenant"] == "acme"
    assert (await c.post(f"/api/v1/runs/{run_ids[0]}/cancel")).status_code == 409

    other = await history.client("globex")
    assert (await other.get(f"/api/v1/runs/{run_ids[0]}")).status_code == 404
    assert (await other.get(f"/api/v1/jobs/{job['id']}/runs")).status_code == 404


async def test_runs_of_a_job_gone_from_redis(history: History, archive_dsn: str) -> None:
    c = await history.client("acme")
    job = (await c.post("/api/v1/jobs", json={"task": "ok", "schedule": EVERY})).json()
    run_ids = [(await c.post(f"/api/v1/jobs/{job['id']}/run")).json()["run_id"]
               for _ in range(3)]
    await work(history, asyncio.Event())  # type: ignore[arg-type]
    await archive_everything(history.engine, archive_dsn)
    await forget_runs(history.engine, run_ids, job_id=job["id"])
    assert (await c.get(f"/api/v1/jobs/{job['id']}")).status_code == 404  # Redis forgot it

    page = (await c.get(f"/api/v1/jobs/{job['id']}/runs?limit=10")).json()
    assert [r["id"] for r in page["items"]] == run_ids[::-1]
    assert page["next_cursor"] is None
    other = await history.client("globex")
    assert (await other.get(f"/api/v1/jobs/{job['id']}/runs")).status_code == 404
    assert (await c.get(f"/api/v1/jobs/{job['id']}/runs?cursor=a12|x")).status_code == 200
    assert (await c.get(f"/api/v1/jobs/{job['id']}/runs?cursor=zz")).status_code == 422
