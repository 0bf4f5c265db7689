"""Every 4xx path answers RFC 9457 problem+json naming the field at fault; never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from rsched.models import Role
from tests.api.conftest import Api

PROBLEM = "application/problem+json"


def problem(r: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["title"]
    if field is not None:
        assert body.get("field") == field, body
    return body


@pytest.mark.parametrize(("body", "status", "field"), [
    (b"{not json", 400, None),
    (b"", 400, None),
    (b'{"task": "t", "colour": "red"}', 422, "colour"),
    (b'{"task": 5}', 422, "task"),
    (b'{"task": ""}', 422, "task"),
    (b'{"task": "t", "queue": "no spaces"}', 422, "queue"),
    (b'{"task": "t", "retry": {"max_attempts": 0}}', 422, "retry.max_attempts"),
    (b'{"task": "t", "schedule": {"type": "cron", "expr": "nope"}}', 422, None),
    (b'{"task": "t", "schedule": {"type": "cron", "expr": "* * * * *", "tz": "Mars/Base"}}',
     422, None),
    (b'{"task": "t", "schedule": {"type": "every", "every_ms": 0}}', 422,
     "schedule.every_ms"),
    (b'{"task": "t", "schedule": {"type": "at", "at_ms": 99999999999999999999}}', 422,
     "schedule.at_ms"),
    (b'{"task": "t", "schedule": {"type": "weekly"}}', 422, "schedule.type"),
    (b'{"task": "t", "name": "bad name!"}', 422, "name"),
    (b'{"task": "t", "labels": {"": "x"}}', 422, None),
    (b'{"task": "t", "args": [123456789012345678901234567890]}', 422, None),
    (b'[]', 422, None),
])
async def test_bad_job_bodies(api: Api, body: bytes, status: int, field: str | None) -> None:
    c = await api.client()
    r = await c.post("/api/v1/jobs", content=body, headers={"content-type": "application/json"})
    problem(r, status, field)


async def test_batch_bounds(api: Api) -> None:
    c = await api.client()
    problem(await c.post("/api/v1/jobs:batch", json={"jobs": []}), 422, "jobs")
    problem(await c.post("/api/v1/jobs:batch", json={"jobs": [{"task": "t"}] * 1001}), 422,
            "jobs")
    problem(await c.post("/api/v1/jobs:batch", json={"jobs": [{"task": "t", "name": "a"}] * 2}),
            422)


async def test_body_over_limit_is_413(make_api: Any) -> None:
    api = await make_api(max_body_bytes=2048)
    c = await api.client()
    big = {"task": "t", "args": ["x" * 4096]}
    problem(await c.post("/api/v1/jobs", json=big), 413)

    async def chunks() -> Any:  # no Content-Length: counted while read
        for _ in range(4):
            yield b" " * 1024

    problem(await c.post("/api/v1/jobs", content=chunks()), 413)


async def test_auth_and_roles(api: Api) -> None:
    anon = api.anonymous()
    r = await anon.get("/api/v1/jobs")
    problem(r, 401)
    assert r.headers["www-authenticate"] == "Bearer"
    problem(await api.anonymous({"Authorization": "Bearer rsk_abc_wrong"}).get("/api/v1/jobs"),
            401)
    problem(await api.anonymous({"X-API-Key": "garbage"}).get("/api/v1/jobs"), 401)
    reader = await api.client(role=Role.READ)
    assert (await reader.get("/api/v1/jobs")).status_code == 200
    problem(await reader.post("/api/v1/jobs", json={"task": "t"}), 403)
    writer = await api.client(role=Role.WRITE)
    problem(await writer.delete("/api/v1/dead-letters"), 403)
    problem(await writer.post("/api/v1/dead-letters:retry"), 403)


async def test_revoked_key_is_refused(make_api: Any) -> None:
    api = await make_api(key_cache_s=0)
    token = await api.key()
    c = api.anonymous({"Authorization": f"Bearer {token}"})
    assert (await c.get("/api/v1/jobs")).status_code == 200
    key_id = token.split("_")[1]
    assert await api.engine.access.revoke_key(key_id, 2)
    problem(await c.get("/api/v1/jobs"), 401)


async def test_not_found_paths_and_params(api: Api) -> None:
    c = await api.client()
    problem(await c.get("/api/v1/jobs/nope"), 404)
    problem(await c.get("/api/v1/jobs/bad%20id"), 404)
    problem(await c.post("/api/v1/jobs/nope/pause"), 404)
    problem(await c.get("/api/v1/runs/nope:1"), 404)
    problem(await c.get("/api/v1/runs/%00"), 404)
    problem(await c.post("/api/v1/runs/nope:1/cancel"), 404)
    problem(await c.post("/api/v1/dead-letters/1-0~nope/retry"), 404)
    problem(await c.delete("/api/v1/dead-letters/garbage"), 404)
    problem(await c.get("/api/v1/nothing-here"), 404)
    problem(await c.put("/api/v1/status"), 405)
    problem(await c.get("/api/v1/jobs?limit=0"), 422, "limit")
    problem(await c.get("/api/v1/jobs?limit=abc"), 422, "limit")
    problem(await c.get("/api/v1/jobs?status=sleeping"), 422, "status")
    problem(await c.get("/api/v1/jobs?cursor=zzz"), 422, "cursor")
    problem(await c.get("/api/v1/jobs?label=novalue"), 422, "label")
    problem(await c.get("/api/v1/dead-letters?cursor=x"), 422, "cursor")


async def test_job_state_conflicts(api: Api) -> None:
    c = await api.client()
    job = (await c.post("/api/v1/jobs", json={"task": "t", "schedule": {
        "type": "every", "every_ms": 60000}})).json()
    url = f"/api/v1/jobs/{job['id']}"
    problem(await c.post(f"{url}/resume"), 409)
    problem(await c.patch(url, json={"queue": "q"}, headers={"If-Match": '"9"'}), 412,
            "If-Match")
    problem(await c.patch(url, json={"queue": "q"}, headers={"If-Match": "abc"}), 412,
            "If-Match")
    problem(await c.patch(url, json={"nope": 1}), 422, "nope")
    problem(await c.put(url, json={"queue": "q"}), 422)
    run_id = (await c.post(f"{url}/run")).json()["run_id"]
    assert (await c.post(f"/api/v1/runs/{run_id}/cancel")).json()["status"] == "cancelled"
    problem(await c.post(f"/api/v1/runs/{run_id}/cancel"), 409)
