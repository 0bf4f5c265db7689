"""Execution controls on the firing side: overlap replace, jitter, max runs, pause until
(real redis-server; FakeClock unless the test needs a real worker's cancel signal)."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from rsched.clock import FakeClock
from rsched.models import Cron, Every, JobDef, JobState, Overlap, RunStatus
from rsched.tasks import RunContext, TaskRegistry
from tests.support import system

HOUR_MS = 3_600_000


def noop_registry() -> TaskRegistry:
    reg = TaskRegistry()

    @reg.task(name="noop")
    async def noop() -> None:
        return None

    return reg


async def test_jitter_spreads_one_cron_over_its_window_and_fires_each_slot_once(
        make_engine: Any, clock: FakeClock) -> None:
    engine = await make_engine(shards=4)
    clock.ms = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS + 1000  # just after an hour
    c, s = system.client(engine, clock), system.scheduler(engine, clock, batch=2000)
    jobs = [JobDef(task="noop", schedule=Cron(expr="0 * * * *"), jitter_s=60.0)
            for _ in range(1000)]
    ids = await c.schedule_many(jobs)
    slot = clock.ms - 1000 + HOUR_MS
    # walk through the window in 6 s steps: each step fires about a tenth of the jobs
    clock.ms = slot - 1
    assert await system.fire_until_idle(s) == 0
    per_step = []
    for step in range(1, 11):
        clock.ms = slot + step * 6000
        per_step.append(await system.fire_until_idle(s))
    assert sum(per_step) == 1000
    assert all(60 <= n <= 140 for n in per_step), per_step
    clock.ms = slot + HOUR_MS + 60_000
    assert await system.fire_until_idle(s) == 1000  # the next slot, jittered again
    for job_id in ids[:50]:
        runs = await c.runs(job_id)
        assert sorted(r.slot_ms for r in runs) == [slot, slot + HOUR_MS]  # unjittered slots
        job = await c.get(job_id)
        assert job.next_ms == slot + 2 * HOUR_MS and job.runs == 2


async def test_max_runs_ends_the_job(make_engine: Any, clock: FakeClock) -> None:
    engine = await make_engine()
    c, s = system.client(engine, clock), system.scheduler(engine, clock)
    job_id = await c.schedule(JobDef(task="noop", schedule=Every(every_ms=1000), max_runs=3))
    for _ in range(5):
        clock.advance(1000)
        await system.fire_until_idle(s)
    job = await c.get(job_id)
    assert (job.state, job.runs, job.max_runs, job.next_ms) == (JobState.DONE, 3, 3, None)


async def test_pause_until_resumes_by_itself_through_the_due_index(
        make_engine: Any, clock: FakeClock) -> None:
    engine = await make_engine()
    c, s = system.client(engine, clock), system.scheduler(engine, clock)
    job_id = await c.schedule(JobDef(task="noop", schedule=Every(every_ms=1000)))
    until = clock.ms + 10_500
    await c.pause(job_id, until_ms=until)
    assert (await c.get(job_id)).paused_until_ms == until
    for _ in range(10):
        clock.advance(1000)
        assert await system.fire_until_idle(s) == 0
    clock.ms = until
    assert await system.fire_until_idle(s) == 1  # missed slots coalesce (fire_once)
    job = await c.get(job_id)
    assert job.state is JobState.ACTIVE and job.paused_until_ms is None
    clock.advance(1000)
    assert await system.fire_until_idle(s) == 1


async def test_resume_before_the_instant_drops_the_timed_resume(
        make_engine: Any, clock: FakeClock) -> None:
    engine = await make_engine()
    c, s = system.client(engine, clock), system.scheduler(engine, clock)
    job_id = await c.schedule(JobDef(task="noop", schedule=Every(every_ms=1000)))
    await c.pause(job_id, until_ms=clock.ms + 5000)
    await c.resume(job_id)
    await c.pause(job_id)  # paused with no end now: the old instant must not resume it
    clock.advance(6000)
    assert await system.fire_until_idle(s) == 0
    assert (await c.get(job_id)).state is JobState.PAUSED


async def test_overlap_replace_cancels_the_running_run(make_engine: Any) -> None:
    engine = await make_engine()
    clock = engine.clock()
    spans: dict[str, list[float]] = collections.defaultdict(list)
    reg = TaskRegistry()

    @reg.task(name="slow")
    async def slow(ctx: RunContext) -> None:
        loop = asyncio.get_running_loop()
        spans[ctx.run_id].append(loop.time())
        try:
            await asyncio.sleep(3)
        finally:
            spans[ctx.run_id].append(loop.time())

    c = system.client(engine, clock, reg)
    s = system.scheduler(engine, clock)  # type: ignore[arg-type]
    w = system.worker(engine, clock, reg, block_s=0.05)
    roles = [asyncio.create_task(s.run()), asyncio.create_task(w.run())]
    try:
        job_id = await c.schedule(JobDef(task="slow", schedule=Every(every_ms=1000),
                                         overlap=Overlap.REPLACE))
        await asyncio.sleep(4.3)
        await c.cancel(job_id)
        await asyncio.sleep(0.3)
    finally:
        await s.stop()
        await w.stop(0.5)
        await asyncio.gather(*roles)
    runs = sorted(await c.runs(job_id, 20), key=lambda r: r.slot_ms)
    assert len(runs) >= 4
    assert all(r.status is RunStatus.CANCELLED for r in runs), [r.status for r in runs]
    ordered = sorted(spans.values())
    for (_, end), (start, _) in zip(ordered, ordered[1:], strict=False):
        assert end - start < 0.2  # the replaced run stopped as its successor started
