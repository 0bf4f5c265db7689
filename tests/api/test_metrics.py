"""/metrics: the API's view of Redis and each role's own counters, parsed with
prometheus_client's text parser, moving as jobs fire and run."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from rsched import metrics
from rsched.devservers import free_port
from rsched.engine import Engine
from rsched.errors import Fatal
from rsched.settings import Settings
from rsched.tasks import TaskRegistry
from tests.support import system

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
async def dev_api(make_engine: Any, redis_url: str, prefix: str
                  ) -> AsyncIterator[tuple[httpx.AsyncClient, Engine]]:
    engine = await make_engine()
    settings = Settings.from_env(environ={}, overrides={
        "redis.url": redis_url, "redis.prefix": prefix, "redis.shards": 4,
        "archiver.dsn": "", "api.dev_mode": True, "metrics.cache_s": 0.0})
    app = create_app(settings, engine=engine)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            yield c, engine


def registry() -> TaskRegistry:
    reg = TaskRegistry()

    @reg.task(name="ok")
    async def ok() -> None:
        await asyncio.sleep(0.01)

    @reg.task(name="boom")
    async def boom() -> None:
        raise Fatal("no")

    return reg


async def scrape(c: httpx.AsyncClient) -> Samples:
    r = await c.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


async def test_metrics_move_when_jobs_fire_and_run(
        dev_api: tuple[httpx.AsyncClient, Engine]) -> None:
    c, engine = dev_api
    before = await scrape(c)
    for task in ("ok", "ok", "boom"):
        assert (await c.post("/api/v1/jobs", json={"task": task})).status_code == 201
    await c.post("/api/v1/jobs", json={"task": "ok", "schedule": {
        "type": "every", "every_ms": 3_600_000, "start_ms": 4_000_000_000_000}})
    created = await scrape(c)
    assert value(created, "rsched_jobs", state="active") == 4
    assert value(created, "rsched_jobs_indexed") == 4
    assert value(created, "rsched_jobs_due") == 4

    sched = system.scheduler(engine, engine.clock(), shards=None)  # leases its shards
    assert await system.fire_until_idle(sched) == 3
    fired = await scrape(c)
    assert value(fired, "rsched_scheduler_fires_total") - \
        value(before, "rsched_scheduler_fires_total") == 3
    assert value(fired, "rsched_scheduler_fire_lag_seconds_count") - \
        value(before, "rsched_scheduler_fire_lag_seconds_count") == 3
    assert value(fired, "rsched_queue_depth", queue="default") == 3
    assert value(fired, "rsched_jobs_due") == 1
    assert sum(v for (n, _), v in fired.items() if n == "rsched_shard_owner") == 4
    assert value(fired, "rsched_shards_unowned") == 0
    assert value(fired, "rsched_scheduler_shards_owned") >= 4

    w = system.worker(engine, engine.clock(), registry())
    await w.start()
    await w.tick(block_ms=None)
    await w.drain()
    ran = await scrape(c)
    ok = "rsched_worker_runs_total"
    assert value(ran, ok, outcome="succeeded") - value(before, ok, outcome="succeeded") == 2
    assert value(ran, ok, outcome="failed") - value(before, ok, outcome="failed") == 1
    assert value(ran, "rsched_worker_run_duration_seconds_count") - \
        value(before, "rsched_worker_run_duration_seconds_count") == 3
    assert value(ran, "rsched_dead_letters") == 1
    assert value(ran, "rsched_workers_live") == 1
    assert value(ran, "rsched_jobs", state="active") == 1  # fired one-shots leave the index
    job_id = (await c.get("/api/v1/jobs?status=active")).json()["items"][0]["id"]
    assert (await c.post(f"/api/v1/jobs/{job_id}/pause")).status_code == 200
    paused = await scrape(c)
    assert value(paused, "rsched_jobs", state="paused") == 1
    assert value(paused, "rsched_jobs", state="active") == 0


async def test_metrics_need_an_admin_key(make_api: Any) -> None:
    from rsched.models import Role

    api = await make_api()
    assert (await api.anonymous().get("/metrics")).status_code == 401
    assert (await (await api.client(role=Role.WRITE)).get("/metrics")).status_code == 403
    r = await (await api.client(role=Role.ADMIN)).get("/metrics")
    assert r.status_code == 200
    assert value(parse(r.text), "rsched_dead_letters") == 0


async def test_role_serves_its_own_metrics_port() -> None:
    port = metrics.serve("127.0.0.1", free_port())
    assert port is not None
    assert metrics.serve("127.0.0.1", 0) is None
    metrics.run_ended("succeeded")
    async with httpx.AsyncClient() as c:
        r = await c.get(f"http://127.0.0.1:{port}/metrics")
    samples = parse(r.text)
    assert value(samples, "rsched_worker_runs_total", outcome="succeeded") >= 1
    assert ("rsched_scheduler_fire_lag_seconds_count", ()) in samples


async def test_grafana_dashboard_uses_only_metrics_we_expose(
        dev_api: tuple[httpx.AsyncClient, Engine]) -> None:
    c, _ = dev_api
    text = (await c.get("/metrics")).text
    exposed = {fam.name for fam in text_string_to_metric_families(text)}
    dash = json.loads((Path(__file__).resolve().parents[2] / "docs" /
                       "grafana-dashboard.json").read_text())
    used = {re.sub(r"_(bucket|total|count|sum)$", "", m) for p in dash["panels"]
            for t in p["targets"] for m in re.findall(r"rsched_[a-z_]+", t["expr"])}
    assert len(used) >= 15 and used <= exposed, used - exposed
