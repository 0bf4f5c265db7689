"""A job's name, labels, unique key and webhook, and its execution controls (max runs,
concurrency, priority): written with the job, archived, rebuilt."""

from __future__ import annotations

from typing import Any

import pytest

from rsched.archive import pg
from rsched.archive.archiver import Archiver
from rsched.archive.rebuild import rebuild
from rsched.clock import FakeClock
from rsched.engine import Engine, RedisClock
from rsched.errors import DuplicateJob
from rsched.models import At, Every, HookOn, JobDef, JobState, RunStatus, Webhook
from rsched.settings import ArchiverSettings, RedisSettings
from rsched.tasks import TaskRegistry
from tests.support import system

TENANT = "acme"
HOOK = Webhook(url="https://hooks.example.com/r", on=HookOn.FAILURE)
LATER = At(at_ms=4_000_000_000_000)


def job(**meta: Any) -> JobDef:
    return JobDef(task="ok", tenant=TENANT, schedule=Every(every_ms=60_000), **meta)


async def archive_all(engine: Engine, redis: Any, dsn: str) -> None:
    archiver = Archiver(engine, ArchiverSettings(dsn=dsn, flush_s=0), RedisClock(redis), "a1")
    await archiver.start()
    while (await archiver.tick(block_ms=None, flush=True)).events:
        pass
    await archiver.close()


async def test_name_labels_unique_key_and_webhook_are_archived_and_rebuilt(
        own_redis: tuple[str, Any], archive_dsn: str, prefix: str, db: Any) -> None:
    _, redis = own_redis
    engine = Engine(redis, RedisSettings(prefix=prefix, shards=4))
    await engine.start()
    c = system.client(engine, RedisClock(redis))
    full = (await c.create(job(name="nightly", labels={"team": "data", "tier": "1"},
                               unique_key="report-2026", webhook=HOOK))).id
    renamed = await c.schedule(job(name="old-name", unique_key="u2", webhook=HOOK))
    await c.update(renamed, job(name="new-name", labels={"moved": "yes"}))
    unnamed = await c.schedule(job(name="short-lived", labels={"a": "b"}))
    await c.update(unnamed, job(webhook=Webhook(url="https://hooks.example.com/other")))
    cancelled = await c.schedule(job(name="gone"))
    await c.cancel(cancelled)
    before = {j: await c.get(j) for j in (full, renamed, unnamed)}
    assert before[full].webhook == HOOK and before[full].unique_key == "report-2026"

    await archive_all(engine, redis, archive_dsn)
    rows = {r[0]: r[1:] for r in await (await db.execute(
        "SELECT job_id, name, labels, unique_key, webhook FROM jobs")).fetchall()}
    assert rows[full] == ("nightly", {"team": "data", "tier": "1"}, "report-2026",
                          {"url": HOOK.url, "on": "failure", "secret": None})
    assert rows[renamed] == ("new-name", {"moved": "yes"}, "u2", None), \
        "an update renames and drops the webhook; the unique key stays"
    assert rows[unnamed] == (None, None, None, {"url": "https://hooks.example.com/other",
                                                "on": "always", "secret": None})

    await redis.flushall()
    conn = await pg.connect(archive_dsn)
    try:
        assert (await rebuild(engine, conn, await RedisClock(redis).now_ms())).jobs_restored == 4
    finally:
        await conn.close()
    after = {j: await c.get(j) for j in (full, renamed, unnamed)}
    for j in (full, renamed, unnamed):
        assert (after[j].name, after[j].labels, after[j].unique_key, after[j].webhook) == \
            (before[j].name, before[j].labels, before[j].unique_key, before[j].webhook)
    named = await c.named_jobs(TENANT)  # the tenant's listing, restored
    assert {n: j.id for n, j in named.items()} == {"nightly": full, "new-name": renamed}
    assert await engine.catalog.name_holder(TENANT, "nightly") == full
    assert await engine.catalog.name_holder(TENANT, "gone") is None, "cancelled: name free"
    with pytest.raises(DuplicateJob):
        await c.schedule(job(name="nightly"))
    assert await c.schedule(job(unique_key="report-2026")) == full, "the unique key holds"
    assert await c.schedule(job(name="gone")) != cancelled


async def on_fake_clock(redis: Any, prefix: str) -> tuple[Engine, FakeClock, TaskRegistry]:
    engine = Engine(redis, RedisSettings(prefix=prefix, shards=4))
    await engine.start()
    reg = TaskRegistry()

    @reg.task(name="ok")
    async def ok() -> None:
        return None

    return engine, FakeClock(await RedisClock(redis).now_ms()), reg


async def rebuild_now(engine: Engine, dsn: str, now_ms: int) -> int:
    conn = await pg.connect(dsn)
    try:
        return (await rebuild(engine, conn, now_ms)).jobs_restored
    finally:
        await conn.close()


async def work_once(engine: Engine, clock: FakeClock, reg: TaskRegistry) -> None:
    """A worker started now (it reads the lanes in its queue's levels set) takes one
    batch and finishes it."""
    w = system.worker(engine, clock, reg)
    await w.start()
    await w.tick(block_ms=None)
    await w.drain()


async def test_max_runs_concurrency_and_priority_are_archived_and_rebuilt(
        own_redis: tuple[str, Any], archive_dsn: str, prefix: str, db: Any) -> None:
    _, redis = own_redis
    engine, clock, reg = await on_fake_clock(redis, prefix)
    c = system.client(engine, clock, reg)
    lane = await c.schedule(job(max_runs=1, concurrency=2, priority=7))
    changed = await c.schedule(JobDef(task="ok", tenant=TENANT, schedule=LATER, max_runs=3,
                                      priority=2))
    await c.update(changed, JobDef(task="ok", tenant=TENANT, schedule=LATER, concurrency=1))
    plain = await c.schedule(JobDef(task="ok", tenant=TENANT, schedule=LATER))
    controls = {j: ((g := await c.get(j)).max_runs, g.concurrency, g.priority)
                for j in (lane, changed, plain)}
    assert controls == {lane: (1, 2, 7), changed: (None, 1, None), plain: (None, None, None)}

    await archive_all(engine, redis, archive_dsn)
    rows = {r[0]: r[1:] for r in await (await db.execute(
        "SELECT job_id, max_runs, concurrency, priority FROM jobs")).fetchall()}
    assert rows == controls, "archived; an update that removes a control clears it"

    await redis.flushall()
    assert await rebuild_now(engine, archive_dsn, clock.ms) == 3
    assert {j: ((g := await c.get(j)).max_runs, g.concurrency, g.priority)
            for j in controls} == controls

    # the restored priority job fires into its lane, which a worker started now reads
    # (it reads only lanes in the queue's levels set), and its max runs ends it
    clock.ms = (await c.get(lane)).next_ms or 0
    assert await system.fire_until_idle(system.scheduler(engine, clock)) == 1
    await work_once(engine, clock, reg)
    [run] = await c.runs(lane)
    assert (run.queue, run.priority, run.status) == ("default", 7, RunStatus.SUCCEEDED)
    assert (await c.get(lane)).state is JobState.DONE, "max_runs=1 reached"


async def test_a_requeued_run_is_read_from_its_lane_after_its_job_left_it(
        own_redis: tuple[str, Any], archive_dsn: str, prefix: str) -> None:
    _, redis = own_redis
    engine, clock, reg = await on_fake_clock(redis, prefix)
    c, s = system.client(engine, clock, reg), system.scheduler(engine, clock)
    moved = await c.schedule(job(priority=3))
    clock.ms = (await c.get(moved)).next_ms or 0
    assert await system.fire_until_idle(s) == 1  # queued in the lane default!3, not run
    await c.update(moved, job())  # the job now queues into its queue's default lane
    await archive_all(engine, redis, archive_dsn)

    await redis.flushall()
    assert await rebuild_now(engine, archive_dsn, clock.ms) == 1
    assert await system.fire_until_idle(s) == 1  # the re-queued run, into its old lane
    await work_once(engine, clock, reg)
    [run] = await c.runs(moved)
    assert (run.priority, run.status) == (3, RunStatus.SUCCEEDED)
