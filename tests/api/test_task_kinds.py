"""HTTP and shell jobs through the REST API: created, shown (secrets as references),
patched from one kind to another, and refused with a 422 when malformed."""

from __future__ import annotations

from tests.api.conftest import Api

HTTP = {"url": "https://example.com/hook", "method": "POST",
        "headers": {"Authorization": {"secret": "hook_token"}}, "json": {"a": 1}}


async def test_an_http_job_is_created_shown_and_patched_to_a_python_task(api: Api) -> None:
    c = await api.client()
    r = await c.post("/api/v1/jobs", json={"http": HTTP})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["task"] == "rsched.http" and job["http"]["headers"] == HTTP["headers"]
    assert job["shell"] is None
    r = await c.patch(f"/api/v1/jobs/{job['id']}", json={"timeout_s": 5})
    assert r.status_code == 200, r.text
    assert r.json()["http"]["url"] == HTTP["url"] and r.json()["timeout_s"] == 5
    r = await c.patch(f"/api/v1/jobs/{job['id']}", json={"task": "report"})
    assert r.status_code == 200, r.text
    assert (r.json()["task"], r.json()["http"]) == ("report", None)


async def test_malformed_task_kinds_are_422_problems(api: Api) -> None:
    c = await api.client()
    for body, words in [
        ({"http": {"url": "file:///etc/passwd"}}, "http:// or https://"),
        ({"task": "t", "http": HTTP}, "exactly one of task, http or shell"),
        ({}, "exactly one of task, http or shell"),
        ({"shell": {"argv": ["true"]}}, "shell jobs go to queue 'shell'"),
    ]:
        r = await c.post("/api/v1/jobs", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert words in r.text, (body, r.text)
    r = await c.post("/api/v1/jobs", json={"shell": {"argv": ["true"]}, "queue": "shell"})
    assert r.status_code == 201, r.text
