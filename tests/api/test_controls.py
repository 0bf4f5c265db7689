"""Execution controls and completion webhooks through the API: accepted, returned,
kept by PATCH, replaced by PUT, bad values refused with 422 problem+json."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api

EVERY = {"type": "every", "every_ms": 60_000}
HOOK = {"url": "https://hooks.example.com/rsched", "on": "failure", "secret": "HOOK_KEY"}
CONTROLS = {"jitter_s": 2.5, "max_runs": 7, "concurrency": 2, "unique_key": "invoice-4711",
            "webhook": HOOK}


async def test_controls_and_webhook_are_accepted_and_returned(api: Api) -> None:
    c = await api.client()
    r = await c.post("/api/v1/jobs", json={"task": "t", "schedule": EVERY, **CONTROLS})
    assert r.status_code == 201, r.text
    job = r.json()
    assert {k: job[k] for k in CONTROLS} == CONTROLS
    again = await c.post("/api/v1/jobs", json={"task": "t", "unique_key": "invoice-4711"})
    assert again.json()["id"] == job["id"]  # the key's holder, nothing created

    patched = await c.patch(f"/api/v1/jobs/{job['id']}", json={"concurrency": 3})
    assert patched.status_code == 200, patched.text
    assert patched.json()["concurrency"] == 3 and patched.json()["webhook"] == HOOK
    assert patched.json()["jitter_s"] == 2.5 and patched.json()["max_runs"] == 7
    removed = await c.patch(f"/api/v1/jobs/{job['id']}", json={"webhook": None})
    assert removed.json()["webhook"] is None
    put = await c.put(f"/api/v1/jobs/{job['id']}", json={"task": "t", "schedule": EVERY})
    assert put.status_code == 200, put.text
    body = put.json()
    assert (body["jitter_s"], body["max_runs"], body["concurrency"]) == (0.0, None, None)
    assert body["unique_key"] == "invoice-4711"  # fixed at creation


@pytest.mark.parametrize("field, value", [
    ("jitter_s", -1), ("jitter_s", 86_401), ("max_runs", 0), ("concurrency", 0),
    ("unique_key", ""), ("webhook", {"url": "ftp://x.example.com"}),
    ("webhook", {"url": "https://"}), ("webhook", {"url": "https://x.example.com", "on": "x"}),
    ("webhook", {"url": "https://x.example.com", "secret": "not a name"}),
    ("webhook", {"url": "https://x.example.com", "extra": 1}),
])
async def test_bad_values_are_422(api: Api, field: str, value: object) -> None:
    c = await api.client()
    r = await c.post("/api/v1/jobs", json={"task": "t", field: value})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"


async def test_a_changed_unique_key_is_refused(api: Api) -> None:
    c = await api.client()
    job = (await c.post("/api/v1/jobs", json={"task": "t", "unique_key": "a"})).json()
    r = await c.patch(f"/api/v1/jobs/{job['id']}", json={"task": "t2"})
    assert r.status_code == 200
    r = await c.put(f"/api/v1/jobs/{job['id']}", json={"task": "t", "unique_key": "b"})
    assert r.status_code == 422 and "unique_key" in r.json()["detail"]
