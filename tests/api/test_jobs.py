"""Job endpoints: create, batch, list with filters and cursors, get, replace, patch with
If-Match, cancel, pause, resume, run now, preview; unique names and labels."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api, all_pages

CRON = {"type": "cron", "expr": "*/5 * * * *", "tz": "Europe/Paris"}


async def test_create_get_and_etag(api: Api) -> None:
    c = await api.client()
    r = await c.post("/api/v1/jobs", json={"task": "report", "schedule": CRON,
                                          "name": "nightly", "labels": {"env": "prod"}})
    assert r.status_code == 201, r.text
    job = r.json()
    assert r.headers["location"] == f"/api/v1/jobs/{job['id']}"
    assert job["name"] == "nightly" and job["labels"] == {"env": "prod"}
    assert job["schedule"] == CRON and job["state"] == "active" and job["next_ms"]
    got = await c.get(f"/api/v1/jobs/{job['id']}")
    assert got.status_code == 200 and got.json() == job
    assert got.headers["etag"] == '"1"'


async def test_batch_creates_all(api: Api) -> None:
    c = await api.client()
    r = await c.post("/api/v1/jobs:batch", json={"jobs": [{"task": "t", "name": f"n{i}"}
                                                          for i in range(30)]})
    assert r.status_code == 201, r.text
    ids = r.json()["ids"]
    assert len(ids) == 30
    names = {(await c.get(f"/api/v1/jobs/{i}")).json()["name"] for i in ids}
    assert names == {f"n{i}" for i in range(30)}


async def test_names_are_unique_per_tenant_until_cancelled(api: Api) -> None:
    c, other = await api.client(), await api.client("globex")
    first = (await c.post("/api/v1/jobs", json={"task": "t", "name": "x",
                                                "schedule": CRON})).json()
    dup = await c.post("/api/v1/jobs", json={"task": "t", "name": "x"})
    assert dup.status_code == 409 and dup.headers["content-type"] == "application/problem+json"
    assert (await other.post("/api/v1/jobs", json={"task": "t", "name": "x"})).status_code == 201
    assert (await c.delete(f"/api/v1/jobs/{first['id']}")).status_code == 204
    assert (await c.post("/api/v1/jobs", json={"task": "t", "name": "x"})).status_code == 201


async def list_all(c: Any, query: str, limit: int = 3) -> list[dict[str, Any]]:
    return (await all_pages(c, "/api/v1/jobs", query, limit))[0]


async def test_list_filters_and_cursor_pagination(api: Api) -> None:
    c = await api.client()
    made = []
    for i in range(8):
        body = {"task": "a" if i % 2 else "b", "queue": "q1" if i < 4 else "q2",
                "name": f"job-{i}", "labels": {"team": "x" if i % 3 else "y"},
                "schedule": CRON}
        made.append((await c.post("/api/v1/jobs", json=body)).json())
    # oldest first; jobs created in the same millisecond are ordered by id
    listed = [j["id"] for j in await list_all(c, "")]
    assert listed == [j["id"] for j in sorted(made, key=lambda j: (j["created_ms"], j["id"]))]
    assert {j["id"] for j in made} == set(listed)
    made = [j["id"] for j in made]
    assert len(await list_all(c, "task=a")) == 4
    assert len(await list_all(c, "queue=q2&task=b")) == 2
    assert [j["name"] for j in await list_all(c, "label=team=y")] == ["job-0", "job-3",
                                                                       "job-6"]
    assert [j["name"] for j in await list_all(c, "name_prefix=job-7")] == ["job-7"]
    await c.post(f"/api/v1/jobs/{made[1]}/pause")
    assert [j["id"] for j in await list_all(c, "status=paused")] == [made[1]]


async def test_put_patch_and_if_match(api: Api) -> None:
    c = await api.client()
    job = (await c.post("/api/v1/jobs", json={"task": "t", "schedule": CRON})).json()
    url = f"/api/v1/jobs/{job['id']}"
    r = await c.patch(url, json={"labels": {"a": "b"}, "queue": "other"},
                      headers={"If-Match": '"1"'})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2 and r.json()["queue"] == "other"
    assert r.json()["schedule"] == CRON and r.headers["etag"] == '"2"'
    stale = await c.patch(url, json={"queue": "x"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412 and stale.json()["field"] == "If-Match"
    r = await c.put(url, json={"task": "u", "schedule": {"type": "every", "every_ms": 5000}},
                    headers={"If-Match": '"2"'})
    assert r.status_code == 200 and r.json()["task"] == "u" and r.json()["labels"] == {}
    assert r.json()["queue"] == "default"


async def test_pause_resume_run_cancel(api: Api) -> None:
    c = await api.client()
    job = (await c.post("/api/v1/jobs", json={"task": "t", "schedule": CRON})).json()
    url = f"/api/v1/jobs/{job['id']}"
    assert (await c.post(f"{url}/pause")).json()["state"] == "paused"
    assert (await c.post(f"{url}/pause")).status_code == 409
    assert (await c.post(f"{url}/resume")).json()["state"] == "active"
    r = await c.post(f"{url}/run")
    assert r.status_code == 202
    run_id = r.json()["run_id"]
    assert r.headers["location"] == f"/api/v1/runs/{run_id}"
    run = (await c.get(f"/api/v1/runs/{run_id}")).json()
    assert run["status"] == "queued" and run["job_id"] == job["id"]
    assert (await c.delete(url)).status_code == 204
    assert (await c.get(url)).json()["state"] == "cancelled"
    assert (await c.get(f"/api/v1/runs/{run_id}")).json()["status"] == "cancelled"
    assert (await c.delete(url)).status_code == 204  # cancelling again is a no-op
    assert (await c.post(f"{url}/run")).status_code == 409
    assert (await c.post(f"{url}/resume")).status_code == 409
    assert (await c.patch(url, json={"queue": "x"})).status_code == 409


async def test_preview_in_the_jobs_zone(api: Api) -> None:
    c = await api.client()
    job = (await c.post("/api/v1/jobs", json={"task": "t", "schedule": {
        "type": "cron", "expr": "0 9 * * *", "tz": "Europe/Paris"}})).json()
    r = await c.get(f"/api/v1/jobs/{job['id']}/preview?count=3")
    assert r.status_code == 200
    p = r.json()
    assert p["tz"] == "Europe/Paris" and len(p["times_ms"]) == 3
    assert all("T09:00:00+0" in t for t in p["times"])
    assert (await c.get(f"/api/v1/jobs/{job['id']}/preview?count=0")).status_code == 422
