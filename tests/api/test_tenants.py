"""Tenant isolation: tenant A cannot read, list, change, run or cancel tenant B's jobs,
runs, queues or dead letters, by id or by listing (404, never 403)."""

from __future__ import annotations

import asyncio
from typing import Any

from rsched.models import Role
from tests.api.conftest import Api
from tests.api.test_runs_ops import EVERY, work


async def b_world(api: Api) -> dict[str, Any]:
    b = await api.client("globex", Role.ADMIN)
    job = (await b.post("/api/v1/jobs", json={"task": "boom", "schedule": EVERY,
                                              "queue": "b-only", "name": "secret",
                                              "retry": {"max_attempts": 1}})).json()
    failed = (await b.post(f"/api/v1/jobs/{job['id']}/run")).json()["run_id"]
    await work(api, asyncio.Event(), queues=("b-only",))
    queued = (await b.post(f"/api/v1/jobs/{job['id']}/run")).json()["run_id"]
    dead = (await b.get("/api/v1/dead-letters")).json()["items"]
    assert len(dead) == 1
    return {"b": b, "job": job["id"], "failed": failed, "queued": queued, "dead": dead[0]["id"]}


async def test_tenant_a_sees_nothing_of_tenant_b(api: Api) -> None:
    w = await b_world(api)
    a = await api.client("acme", Role.ADMIN)
    mine = (await a.post("/api/v1/jobs", json={"task": "ok", "schedule": EVERY})).json()["id"]
    job, run = f"/api/v1/jobs/{w['job']}", f"/api/v1/runs/{w['queued']}"
    for method, url, body in [
        ("GET", job, None), ("PUT", job, {"task": "x"}), ("PATCH", job, {"queue": "x"}),
        ("DELETE", job, None), ("POST", f"{job}/pause", None),
        ("POST", f"{job}/resume", None), ("POST", f"{job}/run", None),
        ("GET", f"{job}/runs", None), ("GET", f"{job}/preview", None),
        ("GET", run, None), ("GET", f"/api/v1/runs/{w['failed']}", None),
        ("POST", f"{run}/cancel", None),
        ("POST", f"/api/v1/dead-letters/{w['dead']}/retry", None),
        ("DELETE", f"/api/v1/dead-letters/{w['dead']}", None),
    ]:
        r = await a.request(method, url, json=body)
        assert r.status_code == 404, (method, url, r.text)
    listed = (await a.get("/api/v1/jobs?limit=500")).json()["items"]
    assert [j["id"] for j in listed] == [mine]
    assert (await a.get("/api/v1/jobs?name_prefix=secret")).json()["items"] == []
    assert (await a.get("/api/v1/dead-letters")).json()["items"] == []
    assert (await a.get("/api/v1/queues")).json()["items"] == [
        {"name": "default", "depth": 0, "pending": 0, "oldest_age_ms": None, "per_min": 0}]
    assert "b-only" not in (await a.get("/api/v1/status")).json()["queues"]
    assert (await a.post("/api/v1/dead-letters:retry")).json()["retried"] == 0
    assert (await a.delete("/api/v1/dead-letters")).json() == {"purged": 0}
    # B's world is untouched
    b = w["b"]
    assert (await b.get(job)).json()["state"] == "active"
    assert (await b.get(run)).json()["status"] == "queued"
    assert len((await b.get("/api/v1/dead-letters")).json()["items"]) == 1
    assert [q["name"] for q in (await b.get("/api/v1/queues")).json()["items"]] == ["b-only"]
