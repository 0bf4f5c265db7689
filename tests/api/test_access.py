"""Per-key rate limits (429 + Retry-After) and Idempotency-Key replays."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api


async def test_rate_limit_per_key(make_api: Any) -> None:
    api = await make_api(rate_per_s=0.5, burst=3)
    c, other = await api.client(), await api.client()
    codes = [(await c.get("/api/v1/jobs")).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = await c.get("/api/v1/jobs")
    assert r.status_code == 429 and r.headers["content-type"] == "application/problem+json"
    assert 1 <= int(r.headers["retry-after"]) <= 2
    assert (await other.get("/api/v1/jobs")).status_code == 200  # buckets are per key


async def test_idempotency_key_replays_the_first_response(api: Api) -> None:
    c = await api.client()
    body = {"task": "t", "name": "once"}
    first = await c.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "k1"})
    again = await c.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    listed = (await c.get("/api/v1/jobs")).json()["items"]
    assert len(listed) == 1
    other = await c.post("/api/v1/jobs", json={"task": "u"}, headers={"Idempotency-Key": "k1"})
    assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key"
    bad = {"task": ""}
    r1 = await c.post("/api/v1/jobs", json=bad, headers={"Idempotency-Key": "k2"})
    r2 = await c.post("/api/v1/jobs", json=bad, headers={"Idempotency-Key": "k2"})
    assert r1.status_code == r2.status_code == 422 and r2.json() == r1.json()
    batch = {"jobs": [{"task": "t"}, {"task": "t"}]}
    b1 = await c.post("/api/v1/jobs:batch", json=batch, headers={"Idempotency-Key": "k3"})
    b2 = await c.post("/api/v1/jobs:batch", json=batch, headers={"Idempotency-Key": "k3"})
    assert b1.json() == b2.json()
    assert len((await c.get("/api/v1/jobs")).json()["items"]) == 3
    too_long = await c.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "x" * 300})
    assert too_long.status_code == 422


async def test_idempotency_keys_are_per_api_key(api: Api) -> None:
    a, b = await api.client(), await api.client()
    r1 = await a.post("/api/v1/jobs", json={"task": "t"}, headers={"Idempotency-Key": "same"})
    r2 = await b.post("/api/v1/jobs", json={"task": "t"}, headers={"Idempotency-Key": "same"})
    assert r1.json()["id"] != r2.json()["id"]
