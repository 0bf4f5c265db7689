"""HTTP tasks against a real server on loopback: outcomes, retries, Retry-After, timeouts."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from rsched.errors import ValidationError
from rsched.models import JobDef, RetryPolicy, RunStatus
from rsched.task_kinds import HttpTask
from tests.support.http_target import Target, closed_port

FAST = RetryPolicy(max_attempts=3, backoff_s=1.0, jitter=0.0)


def http_job(url: str, **kw: Any) -> JobDef:
    job = {"retry": FAST, **kw}
    http = {k: job.pop(k) for k in list(job) if k in HttpTask.__struct_fields__}
    return JobDef(http=HttpTask(url=url, **http), **job)


async def test_a_request_succeeds_and_its_status_duration_and_body_are_recorded(
        make_system: Any, target: Target) -> None:
    sys = await make_system()
    job = await sys.client.schedule(http_job(
        target.url("/ok"), method="POST", headers={"X-Token": "abc"}, query={"q": "1 2"},
        json={"n": 1}))
    await sys.step()
    run = await sys.last_run(job)
    assert run.status is RunStatus.SUCCEEDED
    assert run.result["status"] == 200 and run.result["body"] == "hello"
    assert isinstance(run.result["duration_ms"], int)
    (hit,) = target.to("/ok")
    assert hit.method == "POST" and hit.path == "/ok?q=1+2"
    assert hit.headers["X-Token"] == "abc" and msgspec.json.decode(hit.body) == {"n": 1}
    assert (await sys.client.get(job)).spec.task == "rsched.http"


async def test_a_500_is_retried_by_the_policy_and_then_succeeds(make_system: Any,
                                                               target: Target) -> None:
    sys = await make_system()
    job = await sys.client.schedule(http_job(target.url("/flaky/a")))
    await sys.step()
    run = await sys.last_run(job)
    assert run.status is RunStatus.RETRYING and run.error is not None
    assert run.error.startswith("HTTP 500")
    sys.clock.advance(1000)  # the policy's backoff (no jitter)
    assert await sys.step() == 1
    run = await sys.last_run(job)
    assert (run.status, run.attempt, run.result["body"]) == (RunStatus.SUCCEEDED, 2, "fine")
    assert len(target.to("/flaky/a")) == 2


async def test_a_404_fails_at_once_without_retry(make_system: Any, target: Target) -> None:
    sys = await make_system()
    job = await sys.client.schedule(http_job(target.url("/missing")))
    await sys.step()
    run = await sys.last_run(job)
    assert (run.status, run.attempt) == (RunStatus.FAILED, 1)
    assert run.error is not None and "HTTP 404" in run.error and "no such thing" in run.error
    sys.clock.advance(600_000)
    assert await sys.step() == 0
    assert len(target.to("/missing")) == 1


async def test_retry_4xx_makes_a_404_retry(make_system: Any, target: Target) -> None:
    sys = await make_system()
    job = await sys.client.schedule(http_job(target.url("/missing"), retry_4xx=True))
    await sys.step()
    assert (await sys.last_run(job)).status is RunStatus.RETRYING


async def test_success_codes_decide_what_succeeds(make_system: Any, target: Target) -> None:
    sys = await make_system()
    job = await sys.client.schedule(http_job(target.url("/missing"), success_codes=[404]))
    ok = await sys.client.schedule(http_job(target.url("/ok"), success_codes=[201]))
    await sys.step()
    assert (await sys.last_run(job)).status is RunStatus.SUCCEEDED
    assert (await sys.last_run(ok)).status is RunStatus.FAILED


async def test_a_429_retries_after_its_retry_after_not_the_backoff(make_system: Any,
                                                                  target: Target) -> None:
    sys = await make_system()
    job = await sys.client.schedule(http_job(
        target.url("/limited/x"), retry=RetryPolicy(backoff_s=0.01, jitter=0.0)))
    await sys.step()
    assert (await sys.last_run(job)).status is RunStatus.RETRYING
    sys.clock.advance(1999)  # Retry-After: 2
    assert await sys.step() == 0
    sys.clock.advance(1)
    assert await sys.step() == 1
    run = await sys.last_run(job)
    assert (run.status, run.attempt, run.result["body"]) == (RunStatus.SUCCEEDED, 2, "ok now")


async def test_a_request_past_the_timeout_is_timed_out(make_system: Any, target: Target) -> None:
    sys = await make_system()
    job = await sys.client.schedule(http_job(target.url("/slow"), timeout_s=0.3,
                                             retry=RetryPolicy(max_attempts=1)))
    await sys.step()
    run = await sys.last_run(job)
    assert run.status is RunStatus.TIMED_OUT


async def test_a_refused_connection_is_retried_until_attempts_run_out(make_system: Any) -> None:
    sys = await make_system()
    url = f"http://127.0.0.1:{closed_port()}/x"
    job = await sys.client.schedule(http_job(url, retry=RetryPolicy(
        max_attempts=2, backoff_s=1.0, jitter=0.0)))
    await sys.step()
    run = await sys.last_run(job)
    assert (run.status, run.attempt) == (RunStatus.RETRYING, 2)
    assert run.error is not None and "ConnectError" in run.error
    sys.clock.advance(1000)
    assert await sys.step() == 1
    assert (await sys.last_run(job)).status is RunStatus.DEAD


async def test_a_large_body_is_recorded_as_a_capped_excerpt(make_system: Any,
                                                            target: Target) -> None:
    sys = await make_system()
    job = await sys.client.schedule(http_job(target.url("/big")))
    await sys.step()
    assert (await sys.last_run(job)).result["body"] == "x" * 4096


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://example.com/x", "http:// or https://"),
    ("http:///path", "with a host"),
    ("example.com/ping", "absolute"),
    ("http://exa mple.com", "whitespace"),
    ("http://example.com:99999/", "Port out of range"),
])
async def test_urls_are_checked_when_the_job_is_created(make_system: Any, url: str,
                                                        message: str) -> None:
    sys = await make_system()
    with pytest.raises(ValidationError, match=message):
        await sys.client.schedule(JobDef(http=HttpTask(url=url)))
    with pytest.raises(msgspec.ValidationError, match=message):  # as a body is decoded
        msgspec.convert({"http": {"url": url}}, JobDef)
