"""FLUSHALL on Redis, then `rsched rebuild` from the archive."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import msgspec
import pytest

from rsched.archive import pg
from rsched.archive.archiver import Archiver
from rsched.archive.rebuild import rebuild
from rsched.clock import FakeClock
from rsched.engine import Engine, RedisClock
from rsched.models import At, Every, Immediate, JobDef, JobState, RetryPolicy, RunStatus
from rsched.settings import ArchiverSettings, RedisSettings
from rsched.tasks import TaskRegistry
from tests.support import system
from tests.support.procs import run_cli

SHARDS = 4


def registry() -> TaskRegistry:
    reg = TaskRegistry()

    @reg.task(name="ok")
    async def ok() -> None:
        return None

    @reg.task(name="fail")
    async def fail() -> None:
        raise RuntimeError("not yet")

    return reg


async def three_slots_ago(redis: Any, prefix: str) -> tuple[Engine, FakeClock, Any, Any, Any]:
    """An engine on ``redis``, a clock three minute-slots in the past, and a client,
    scheduler and (started) worker on them."""
    engine = Engine(redis, RedisSettings(prefix=prefix, shards=SHARDS))
    await engine.start()
    clock = FakeClock(await RedisClock(redis).now_ms() - 180_005)
    reg = registry()
    w = system.worker(engine, clock, reg)
    await w.start()
    return engine, clock, system.client(engine, clock, reg), system.scheduler(engine, clock), w


async def test_flushall_then_rebuild_restores_every_job_without_refiring(
        own_redis: tuple[str, Any], archive_dsn: str, prefix: str) -> None:
    url, redis = own_redis
    engine, clock, c, s, w = await three_slots_ago(redis, prefix)
    every = await c.schedule(JobDef(task="ok", schedule=Every(every_ms=60_000)))
    paused = await c.schedule(JobDef(task="ok", schedule=Every(every_ms=60_000)))
    cancelled = await c.schedule(JobDef(task="ok", schedule=Every(every_ms=60_000)))
    once = await c.schedule(JobDef(task="ok", schedule=Immediate()))
    later = await c.schedule(JobDef(task="ok", schedule=At(at_ms=clock.ms + 3_600_000)))
    retrying = await c.schedule(JobDef(task="fail", retry=RetryPolicy(max_attempts=3,
                                                                      backoff_s=600)))
    for _ in range(3):
        await system.fire_until_idle(s)
        await w.tick(block_ms=None)
        await w.drain()
        clock.advance(60_000)
    await c.pause(paused)
    await c.cancel(cancelled)
    before = {j: await c.get(j) for j in (every, paused, cancelled, once, later)}
    assert before[every].runs == 3

    archiver = Archiver(engine, ArchiverSettings(dsn=archive_dsn, flush_s=0), clock, "a1")
    await archiver.start()
    while (await archiver.tick(block_ms=None, flush=True)).events:
        pass
    await archiver.close()

    await redis.flushall()
    out = run_cli("rebuild", env={
        "RSCHED_REDIS__URL": url, "RSCHED_REDIS__PREFIX": prefix,
        "RSCHED_REDIS__SHARDS": str(SHARDS), "RSCHED_ARCHIVER__DSN": archive_dsn,
        "RSCHED_REDIS__FAST_CLIENT": "false"})
    assert out.returncode == 0, out.stderr
    assert "restored 6 job(s)" in out.stdout and "re-queued 1 unfinished run(s)" in out.stdout

    engine = Engine(redis, RedisSettings(prefix=prefix, shards=SHARDS))
    await engine.start()
    reg = registry()
    c, s = system.client(engine, clock, reg), system.scheduler(engine, clock)
    w = system.worker(engine, clock, reg)
    await w.start()
    after_every = await c.get(every)
    assert after_every.next_ms == before[every].next_ms, "continues after the last fired slot"
    assert after_every.runs == 3
    assert (await c.get(paused)).state is JobState.PAUSED
    assert (await c.get(cancelled)).state is JobState.CANCELLED
    assert (await c.get(once)).state is JobState.DONE
    assert (await c.get(later)).next_ms == before[later].next_ms
    assert sorted(await c.list_jobs()) == sorted([every, paused, later])

    clock.ms = await RedisClock(redis).now_ms()  # slot 4 and the re-queued retry are due
    fired = await system.fire_until_idle(s)
    await w.tick(block_ms=None)
    await w.drain()
    runs = await c.runs(every)
    assert [r.id for r in runs] == [f"{every}:4"], "next run number, next slot"
    assert runs[0].slot_ms == before[every].next_ms
    [retry_run] = await c.runs(retrying)
    # attempt 1 failed before the rebuild: the re-queued run is attempt 2, which fails
    # too and waits for attempt 3 (the last): no attempt runs twice
    assert retry_run.id == f"{retrying}:1" and retry_run.attempt == 3
    assert retry_run.status is RunStatus.RETRYING
    assert fired == 2  # the every-job's next slot and the re-queued retry; nothing else
    assert msgspec.to_builtins(await c.runs(paused)) == []


async def test_a_running_archiver_survives_redis_losing_its_data(
        own_redis: tuple[str, Any], archive_dsn: str, prefix: str, db: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    import asyncio
    import logging

    from tests.support.procs import eventually

    caplog.set_level(logging.WARNING, logger="rsched.archive.archiver")
    url, redis = own_redis
    engine = Engine(redis, RedisSettings(prefix=prefix, shards=SHARDS))
    await engine.start()
    clock = RedisClock(redis)
    c = system.client(engine, clock, registry())
    archiver = Archiver(engine, ArchiverSettings(dsn=archive_dsn, flush_s=0.05,
                                                 retry_max_s=0.2), clock, "a1")
    loop = asyncio.create_task(archiver.run())

    async def archived(n: int) -> bool:
        return (await (await db.execute("SELECT count(*) FROM jobs")).fetchone())[0] == n

    await c.schedule(JobDef(id="before", task="ok", schedule=Every(every_ms=60_000)))
    await eventually(lambda: archived(1), "the first job archived")
    await redis.flushall()  # the events streams and their consumer group are gone
    await c.schedule(JobDef(id="after", task="ok", schedule=Every(every_ms=60_000)))
    await eventually(lambda: archived(2), "a job created after the loss archived")
    assert not loop.done() and "consumer group gone" in caplog.text
    await archiver.stop()
    await asyncio.wait_for(loop, 15)


async def test_rebuild_after_retention_dropped_every_run_continues_counter_and_slots(
        own_redis: tuple[str, Any], archive_dsn: str, prefix: str, db: Any) -> None:
    """A job whose runs all aged out of the archive (a weekly job, a week of runs kept)
    still continues after its last fired slot, with the next run number."""
    _, redis = own_redis
    engine, clock, c, s, w = await three_slots_ago(redis, prefix)
    job = await c.schedule(JobDef(task="ok", schedule=Every(every_ms=60_000)))
    updated = await c.schedule(JobDef(task="ok", schedule=Every(every_ms=60_000)))
    for _ in range(3):
        await system.fire_until_idle(s)
        clock.advance(60_000)
    await c.run_now(job)  # run 4: manual, not a slot
    await c.update(updated, JobDef(task="ok", schedule=Every(every_ms=3_600_000)))
    await w.tick(block_ms=None)
    await w.drain()
    before = {j: await c.get(j) for j in (job, updated)}
    assert (before[job].runs, before[updated].runs) == (4, 3)

    archiver = Archiver(engine, ArchiverSettings(dsn=archive_dsn, flush_s=0), clock, "a1")
    await archiver.start()
    while (await archiver.tick(block_ms=None, flush=True)).events:
        pass
    await archiver.close()
    conn = await pg.connect(archive_dsn)
    try:  # retention takes every partition the runs are in (today's too)
        await pg.drop_old_partitions(conn, date.today() + timedelta(days=2), retention_days=1)
    finally:
        await conn.close()
    assert (await (await db.execute("SELECT count(*) FROM runs")).fetchone())[0] == 0

    await redis.flushall()
    conn = await pg.connect(archive_dsn)
    try:
        report = await rebuild(engine, conn, clock.ms)
    finally:
        await conn.close()
    assert report.jobs_restored == 2
    after = {j: await c.get(j) for j in (job, updated)}
    assert after[job].runs == 4 and after[job].next_ms == before[job].next_ms
    assert after[updated].runs == 3, "the counter goes on after an update"
    assert after[updated].next_ms == before[updated].next_ms, "the new version's schedule"

    clock.ms = before[job].next_ms
    await system.fire_until_idle(s)
    runs = await c.runs(job)
    assert [(r.id, r.slot_ms) for r in runs] == [(f"{job}:5", before[job].next_ms)]
