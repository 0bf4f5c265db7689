"""A job's concurrency limit across workers, and unique (idempotency) keys under
concurrent creates (real redis-server, real workers in this process on the Redis clock)."""

from __future__ import annotations

import asyncio
from typing import Any

from rsched.clock import FakeClock
from rsched.engine import Outcome
from rsched.errors import Code
from rsched.models import At, Every, Immediate, JobDef, JobState, RunStatus
from rsched.tasks import RunContext, TaskRegistry
from tests.support import system

LATER = At(at_ms=4_000_000_000_000)  # jobs that only run when asked (run_now)


async def test_a_job_limit_of_two_holds_across_three_workers(make_engine: Any) -> None:
    engine = await make_engine()
    clock = engine.clock()
    spans: list[tuple[float, float]] = []
    reg = TaskRegistry()

    @reg.task(name="busy")
    async def busy(ctx: RunContext) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(0.15)
        spans.append((start, loop.time()))

    c = system.client(engine, clock, reg)
    s = system.scheduler(engine, clock)  # type: ignore[arg-type]
    workers = [system.worker(engine, clock, reg, block_s=0.05, limit_retry_s=0.05)
               for _ in range(3)]
    job_id = await c.schedule(JobDef(task="busy", schedule=LATER,
                                     concurrency=2))
    for _ in range(12):
        await c.run_now(job_id)
    roles = [asyncio.create_task(r.run()) for r in (s, *workers)]
    try:
        for _ in range(200):
            await asyncio.sleep(0.05)
            runs = await c.runs(job_id, 20)
            if len(runs) == 12 and all(r.status is RunStatus.SUCCEEDED for r in runs):
                break
    finally:
        await s.stop()
        for w in workers:
            await w.stop(1.0)
        await asyncio.gather(*roles)
    assert len(spans) == 12
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans],
                    key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert peak == 2  # the limit was reached, never passed
    assert await engine.core.redis.zcard(engine.keys_for(job_id).held(job_id)) == 0


async def test_a_full_job_limit_defers_the_run_and_a_finished_run_frees_its_slot(
        make_engine: Any, clock: FakeClock) -> None:
    engine = await make_engine()
    c, s = system.client(engine, clock), system.scheduler(engine, clock)
    job_id = await c.schedule(JobDef(task="t", schedule=LATER,
                                     concurrency=1))
    first, second = await c.run_now(job_id), await c.run_now(job_id)
    await engine.runs.ensure_groups(["default"])
    got = await engine.runs.read_runs("w", ["default"], 10, None)
    by_shard = {got[0].shard: got}
    codes = await engine.runs.start_runs(clock.ms, "w", by_shard, 500)
    assert codes[got[0].shard] == [Code.OK, Code.DEFERRED]
    assert await engine.runs.read_runs("w", ["default"], 10, None) == []
    clock.advance(500)
    assert await system.fire_until_idle(s) == 1  # the deferred run is queued again
    assert await engine.runs.complete_runs(clock.ms, 60_000, {got[0].shard: [
        Outcome(first, 1, RunStatus.SUCCEEDED)]}) == [Code.OK]
    again = await engine.runs.read_runs("w", ["default"], 10, None)
    assert [d.run_id for d in again] == [second]
    assert (await engine.runs.start_runs(clock.ms, "w", {again[0].shard: again}))[
        again[0].shard] == [Code.OK]


async def test_fifty_concurrent_creates_with_one_unique_key_make_one_job(
        make_engine: Any, clock: FakeClock) -> None:
    engine = await make_engine()
    c = system.client(engine, clock)
    job = JobDef(task="t", schedule=Every(every_ms=60_000), unique_key="nightly-report")
    ids = await asyncio.gather(*(c.schedule(job) for _ in range(50)))
    assert len(set(ids)) == 1
    listed = [j for shard in range(engine.shards)
              for j in await engine.query.list_jobs(shard)]
    assert listed == [ids[0]]
    other = await c.schedule(JobDef(task="t", unique_key="nightly-report", tenant="acme"))
    assert other != ids[0]  # keys are per tenant


async def test_a_unique_key_is_free_again_once_its_job_is_gone(
        make_engine: Any, clock: FakeClock) -> None:
    engine = await make_engine()
    c = system.client(engine, clock)
    first = await c.schedule(JobDef(task="t", schedule=Immediate(), unique_key="k"))
    await c.cancel(first)
    assert (await c.get(first)).state is JobState.CANCELLED
    assert await c.schedule(JobDef(task="t", unique_key="k")) == first  # until it expires
    await engine.core.redis.delete(engine.keys_for(first).job(first))  # done_job_ttl_s passed
    clock.advance(31_000)
    assert await c.schedule(JobDef(task="t", unique_key="k")) != first
