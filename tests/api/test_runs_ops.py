"""Runs, queues, dead letters, status and health through the API, with a real worker."""

from __future__ import annotations

import asyncio
from typing import Any

from rsched.clock import FakeClock
from rsched.errors import Fatal
from rsched.models import Role
from rsched.tasks import TaskRegistry
from tests.api.conftest import Api, all_run_pages
from tests.support import system

EVERY = {"type": "every", "every_ms": 3_600_000}


def registry(gate: asyncio.Event) -> TaskRegistry:
    reg = TaskRegistry()

    @reg.task(name="ok")
    async def ok() -> None:
        return None

    @reg.task(name="boom")
    async def boom() -> None:
        raise Fatal("it broke")

    @reg.task(name="slow")
    async def slow() -> None:
        await gate.wait()

    return reg


async def work(api: Api, gate: asyncio.Event, *, drain: bool = True,
               queues: tuple[str, ...] = ("default",)) -> Any:
    w = system.worker(api.engine, FakeClock(), registry(gate), queues=list(queues))
    await w.start()
    await w.tick(block_ms=None)
    if drain:
        await w.drain()
    return w


async def test_job_runs_pages_and_run_lookup(api: Api) -> None:
    c = await api.client()
    job = (await c.post("/api/v1/jobs", json={"task": "ok", "schedule": EVERY})).json()
    run_ids = [(await c.post(f"/api/v1/jobs/{job['id']}/run")).json()["run_id"]
               for _ in range(5)]
    await work(api, asyncio.Event())
    seen, _ = await all_run_pages(c, job["id"])
    assert [r["id"] for r in seen] == run_ids[::-1]
    assert {r["status"] for r in seen} == {"succeeded"}
    run = (await c.get(f"/api/v1/runs/{run_ids[0]}")).json()
    assert run["status"] == "succeeded" and run["tenant"] == "acme"
    r = await c.get(f"/api/v1/jobs/{job['id']}/runs?cursor=bogus")
    assert r.status_code == 422


async def test_cancel_a_running_run_signals_its_worker(api: Api) -> None:
    c = await api.client()
    gate = asyncio.Event()
    job = (await c.post("/api/v1/jobs", json={"task": "slow", "schedule": EVERY})).json()
    run_id = (await c.post(f"/api/v1/jobs/{job['id']}/run")).json()["run_id"]
    w = await work(api, gate, drain=False)
    assert (await c.get(f"/api/v1/runs/{run_id}")).json()["status"] == "running"
    r = await c.post(f"/api/v1/runs/{run_id}/cancel")
    assert r.status_code == 202 and r.json()["status"] == "cancelling"
    gate.set()
    await w.drain()


async def test_dead_letters_list_retry_delete_purge(api: Api) -> None:
    c, admin = await api.client(), await api.client(role=Role.ADMIN)
    job = (await c.post("/api/v1/jobs", json={"task": "boom", "schedule": EVERY,
                                              "retry": {"max_attempts": 1}})).json()
    for _ in range(4):
        await c.post(f"/api/v1/jobs/{job['id']}/run")
    await work(api, asyncio.Event())
    dead = (await c.get("/api/v1/dead-letters?limit=3")).json()
    assert len(dead["items"]) == 3 and dead["next_cursor"]
    assert dead["items"][0]["error"].endswith("it broke")
    rest = (await c.get(f"/api/v1/dead-letters?cursor={dead['next_cursor']}")).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    first = dead["items"][0]["id"]
    r = await c.post(f"/api/v1/dead-letters/{first}/retry")
    assert r.status_code == 202 and r.json()["retried"] == 1
    new_run = r.json()["run_ids"][0]
    assert (await c.get(f"/api/v1/runs/{new_run}")).json()["status"] == "queued"
    assert (await c.post(f"/api/v1/dead-letters/{first}/retry")).status_code == 404
    assert (await c.delete(f"/api/v1/dead-letters/{dead['items'][1]['id']}")).status_code == 204
    r = await admin.post("/api/v1/dead-letters:retry")
    assert r.status_code == 202 and r.json()["retried"] == 2
    await work(api, asyncio.Event())  # all three retried runs fail again
    assert len((await c.get("/api/v1/dead-letters")).json()["items"]) == 3
    assert (await admin.delete("/api/v1/dead-letters")).json() == {"purged": 3}
    assert (await c.get("/api/v1/dead-letters")).json()["items"] == []


async def test_queues_and_status(api: Api) -> None:
    c = await api.client()
    job = (await c.post("/api/v1/jobs", json={"task": "ok", "queue": "mail",
                                              "schedule": EVERY})).json()
    for _ in range(3):
        await c.post(f"/api/v1/jobs/{job['id']}/run")
    queues = (await c.get("/api/v1/queues")).json()["items"]
    assert [q["name"] for q in queues] == ["mail"]
    assert queues[0]["depth"] == 3 and queues[0]["per_min"] == 3
    status = (await c.get("/api/v1/status")).json()
    assert status["tenant"] == "acme" and status["queues"] == {"mail": 3}
    assert status["jobs_due"] >= 1


async def test_health_and_readiness(api: Api) -> None:
    anon = api.anonymous()
    assert (await anon.get("/healthz")).json() == {"status": "ok", "checks": {}}
    r = await anon.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"] == {"redis": "ok"}


async def test_dev_mode_needs_no_key(make_api: Any) -> None:
    api = await make_api(dev_mode=True)
    r = await api.anonymous().post("/api/v1/jobs", json={"task": "t"})
    assert r.status_code == 201
    assert (await api.anonymous().get("/api/v1/jobs")).json()["items"][0]["id"] == r.json()["id"]
