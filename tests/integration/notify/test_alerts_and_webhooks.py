"""Failure alerts and completion webhooks end to end: real redis-server, a scheduler,
a worker and notifiers in this process, and a real HTTP receiver on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any

import msgspec
import pytest

from rsched.client import Client
from rsched.errors import Code
from rsched.models import Every, HookOn, Immediate, JobDef, RetryPolicy, RunStatus, Webhook
from rsched.settings import AlertSettings
from rsched.tasks import TaskRegistry
from tests.integration.notify.conftest import finished, notifier, running, wait_runs
from tests.support import system
from tests.support.receiver import Receiver

FAST_RETRY = RetryPolicy(max_attempts=2, backoff_s=0.01, jitter=0)


def alerts_to(r: Receiver, **kw: Any) -> AlertSettings:
    return AlertSettings(webhook_url=r.url + "/alerts", log=True, **kw)


async def test_a_dead_lettered_run_sends_one_alert(make_engine: Any, registry: TaskRegistry,
                                                    receiver: Receiver) -> None:
    engine = await make_engine()
    job_id = await _client(engine, registry).schedule(
        JobDef(task="boom", schedule=Immediate(), retry=FAST_RETRY, name="nightly"))
    async with running(engine, registry, [notifier(engine, alerts_to(receiver))]):
        runs = await wait_runs(engine, job_id, lambda rs: bool(finished(rs)))
        await receiver.wait_for(1, "/alerts")
        await asyncio.sleep(0.3)  # nothing else comes
    assert [r.status for r in runs] == [RunStatus.DEAD]
    [body] = receiver.bodies("/alerts")
    alert = json.loads(body)
    assert alert["reason"] == "run_failed" and alert["status"] == "dead"
    assert alert["job_id"] == job_id and alert["run_id"] == runs[0].id
    assert alert["job_name"] == "nightly" and alert["attempt"] == 2
    assert alert["error"].startswith("RuntimeError: boom") and alert["suppressed"] == 0


async def test_a_flapping_job_is_rate_limited_across_notifiers(
        make_engine: Any, registry: TaskRegistry, receiver: Receiver) -> None:
    engine = await make_engine()
    job_id = await _client(engine, registry).schedule(JobDef(
        task="fatal", schedule=Every(every_ms=100), retry=FAST_RETRY))
    cfg = alerts_to(receiver, window_s=60, per_window=2)
    notifiers = [notifier(engine, cfg, consumer=f"n{i}") for i in range(2)]
    async with running(engine, registry, notifiers) as stop_firing:
        await wait_runs(engine, job_id, lambda rs: len(finished(rs)) >= 10)
        await stop_firing()
        await asyncio.sleep(0.5)
    failed = finished(await engine.query.job_runs(job_id, 1000))
    assert len(failed) >= 10 and {r.status for r in failed} == {RunStatus.FAILED}
    assert len(receiver.bodies("/alerts")) == 2  # the configured number, not one per run
    held = sum(n.counts["alerts_held"] for n in notifiers)
    assert held == len(failed) - 2


async def test_a_completion_webhook_fires_once_per_finished_run_signed(
        make_engine: Any, registry: TaskRegistry, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_KEY_FOR_TEST", "s3cret")
    engine = await make_engine()
    hook = Webhook(url=receiver.url + "/hooks", on=HookOn.ALWAYS, secret="HOOK_KEY_FOR_TEST")
    job_id = await _client(engine, registry).schedule(JobDef(
        task="ok", schedule=Every(every_ms=100), webhook=hook))
    async with running(engine, registry, [notifier(engine)]) as stop_firing:
        await wait_runs(engine, job_id, lambda rs: len(finished(rs)) >= 5)
        await stop_firing()
        runs = await wait_runs(engine, job_id, lambda rs: len(finished(rs)) == len(rs))
        await receiver.wait_for(len(runs), "/hooks")
        await asyncio.sleep(0.3)
    hooks = [r for r in receiver.requests if r.path == "/hooks"]
    assert sorted(json.loads(r.body)["run_id"] for r in hooks) == sorted(r.id for r in runs)
    for req in hooks:
        t, mac = (p.split("=", 1)[1] for p in req.headers["x-rsched-signature"].split(","))
        expected = hmac.new(b"s3cret", f"{t}.".encode() + req.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(mac, expected)
        assert abs(int(t) - time.time() * 1000) < 60_000
        doc = json.loads(req.body)
        assert doc["event"] == "run.succeeded" and req.headers["x-rsched-event"] == doc["event"]
        assert "n" in doc["result"]  # the handler's result, as the run records it
    again = await engine.query.job_runs(job_id, 1000)
    assert {(r.webhook_status, r.webhook_attempts, r.webhook_code) for r in again} == {
        ("delivered", 1, 200)}


async def test_a_webhook_is_retried_when_the_receiver_answers_500(
        make_engine: Any, registry: TaskRegistry, receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    engine = await make_engine()
    job_id = await _client(engine, registry).schedule(JobDef(
        task="ok", webhook=Webhook(url=receiver.url + "/hooks")))
    async with running(engine, registry, [notifier(engine)]):
        await receiver.wait_for(3, "/hooks")
        await wait_runs(engine, job_id, lambda rs: bool(rs) and rs[0].webhook_status is not None)
    reqs = receiver.requests
    assert len(reqs) == 3 and len({r.headers["x-rsched-delivery"] for r in reqs}) == 1
    assert "x-rsched-signature" not in reqs[0].headers  # no secret named: unsigned
    [run] = await engine.query.job_runs(job_id)
    assert (run.webhook_status, run.webhook_attempts, run.webhook_code) == ("delivered", 3, 200)


async def test_a_webhook_on_failure_skips_successes_and_a_4xx_is_not_retried(
        make_engine: Any, registry: TaskRegistry, receiver: Receiver) -> None:
    receiver.statuses = [404]
    engine = await make_engine()
    c = _client(engine, registry)
    hook = Webhook(url=receiver.url + "/hooks", on=HookOn.FAILURE)
    ok = await c.schedule(JobDef(task="ok", webhook=hook))
    bad = await c.schedule(JobDef(task="fatal", webhook=hook))
    async with running(engine, registry, [notifier(engine)]):
        await wait_runs(engine, bad, lambda rs: bool(rs) and rs[0].webhook_status is not None)
        await wait_runs(engine, ok, lambda rs: bool(finished(rs)))
        await asyncio.sleep(0.3)
    assert [json.loads(b)["job_id"] for b in receiver.bodies("/hooks")] == [bad]
    [run] = await engine.query.job_runs(bad)
    assert (run.webhook_status, run.webhook_attempts, run.webhook_code) == ("failed", 1, 404)


async def test_notifications_a_dead_notifier_read_are_sent_by_another(
        make_engine: Any, registry: TaskRegistry, receiver: Receiver) -> None:
    engine = await make_engine()
    await engine.notify.ensure_groups()
    job_id = await _client(engine, registry).schedule(JobDef(
        task="ok", webhook=Webhook(url=receiver.url + "/hooks")))
    async with running(engine, registry, []):
        await wait_runs(engine, job_id, lambda rs: bool(finished(rs)))
    taken = await engine.notify.read("died", 100, 10)  # read, then the process died
    assert any(e.get("status") == "succeeded" for _, _, e in taken)
    assert receiver.requests == []
    cfg = msgspec.structs.replace(notifier(engine).cfg, claim_idle_s=0.2)
    await asyncio.sleep(0.25)
    async with running(engine, registry, [notifier(engine, cfg=cfg, consumer="n2")],
                       scheduler=False):
        await receiver.wait_for(1, "/hooks")
    assert [json.loads(b)["job_id"] for b in receiver.bodies("/hooks")] == [job_id]


async def test_the_alert_gate_counts_failures_per_window(make_engine: Any) -> None:
    engine = await make_engine()
    gate = engine.notify.note_failure
    kw = {"window_ms": 1000, "threshold": 3, "per_window": 1}
    assert await gate("j", 10_000, final=False, **kw) == (Code.OK, 1, 0)
    assert await gate("j", 10_100, final=False, **kw) == (Code.OK, 2, 0)
    assert await gate("j", 10_200, final=False, **kw) == (Code.DONE, 3, 0)  # the threshold
    assert await gate("j", 10_300, final=True, **kw) == (Code.DEFERRED, 4, 1)
    assert await gate("j", 10_400, final=True, **kw) == (Code.DEFERRED, 5, 2)
    # a new window: the next alert reports the two held back
    assert await gate("j", 11_000, final=True, **kw) == (Code.DONE, 1, 2)
    assert await gate("j", 11_100, final=True, **kw) == (Code.DEFERRED, 2, 1)
    assert await gate("other", 11_100, final=True, **kw) == (Code.DONE, 1, 0)


def _client(engine: Any, registry: TaskRegistry) -> Client:
    return system.client(engine, engine.clock(), registry)
