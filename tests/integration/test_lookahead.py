"""The scheduler's lookahead on a real redis-server: slots due within ``lookahead_ms`` are
fired ahead in batches, their runs carry the slot as not-before, and the worker holds them
until then (docs/decisions.md, "Lookahead"). Exactly once per slot is the same CAS as
without it (tests/integration/test_concurrency.py, tests/chaos run with the default)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rsched.clock import FakeClock, SyncedClock
from rsched.models import At, Every, JobDef, Overlap, QueueLimits, RunStatus
from rsched.roles.scheduler import Scheduler
from rsched.roles.worker import Worker
from rsched.tasks import TaskRegistry
from tests.support import system


def _stamping(starts: dict[int, float]) -> TaskRegistry:
    reg = TaskRegistry()

    @reg.task(name="stamp")
    async def stamp(i: int) -> None:
        starts[i] = time.time() * 1000  # the host's clock is Redis's here (one machine)

    return reg


async def _parts(make_engine: Any, shards: int = 1, lookahead_ms: int = 5000,
                 **worker_cfg: Any) -> tuple[Any, dict[int, float], Any, Scheduler, Worker]:
    """Redis clock, task start times by arg, client, scheduler, worker (a synced clock)."""
    engine = await make_engine(shards=shards)
    clock = engine.clock()
    starts: dict[int, float] = {}
    reg = _stamping(starts)
    return (clock, starts, system.client(engine, clock, reg),
            system.scheduler(engine, clock, lookahead_ms=lookahead_ms),
            system.worker(engine, SyncedClock(clock), reg, **worker_cfg))


async def _wait_for(check: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_runs_fired_ahead_start_at_their_slot_never_before(make_engine: Any) -> None:
    clock, starts, c, sched, worker = await _parts(make_engine, shards=2, lookahead_ms=400)
    loops = [asyncio.create_task(sched.run()), asyncio.create_task(worker.run())]
    t0 = await clock.now_ms()
    jobs = {i: await c.schedule(JobDef(task="stamp", args=[i],
                                       schedule=At(at_ms=t0 + 600 + 15 * i)))
            for i in range(20)}

    async def all_done() -> bool:
        for j in jobs.values():
            runs = await c.runs(j)
            if not runs or runs[0].status is not RunStatus.SUCCEEDED:
                return False
        return True

    await _wait_for(all_done)
    for i, job in jobs.items():
        [run] = await c.runs(job)
        assert run.enqueued_ms is not None and run.enqueued_ms < run.slot_ms, "fired ahead"
        # held until the slot: the worker's Redis time is within half a round trip
        assert starts[i] >= run.slot_ms - 1, (i, starts[i] - run.slot_ms)
        assert run.attempt == 1
    await sched.stop()
    await worker.stop(1.0)
    await asyncio.wait_for(asyncio.gather(*loops), 10)


async def test_only_jobs_that_nothing_at_the_slot_can_change_fire_ahead(
        make_engine: Any, clock: FakeClock) -> None:
    # overlap forbid/replace decide on the runs active at the slot: they fire when due
    engine = await make_engine(shards=1)
    c = system.client(engine, clock, _stamping({}))
    s = system.scheduler(engine, clock, lookahead_ms=200)
    start = clock.ms + 100
    by_overlap = {o: await c.schedule(JobDef(task="stamp", args=[0], overlap=o,
                                             schedule=Every(every_ms=10_000, start_ms=start)))
                  for o in Overlap}
    assert (await s.tick()).fired == 1
    assert [len(await c.runs(j)) for j in by_overlap.values()] == [1, 0, 0]
    [early] = await c.runs(by_overlap[Overlap.ALLOW])
    assert (early.slot_ms, early.enqueued_ms) == (start, clock.ms)
    clock.advance(99)
    assert (await s.tick()).fired == 0
    clock.advance(1)
    assert (await s.tick()).fired == 2
    assert [len(await c.runs(j)) for j in by_overlap.values()] == [1, 1, 1]


async def test_a_run_read_ahead_is_started_as_of_its_slot_and_cancellable_until_then(
        make_engine: Any) -> None:
    clock, starts, c, s, w = await _parts(make_engine, block_s=0.05)
    loop = asyncio.create_task(w.run())
    slot = await clock.now_ms() + 3000
    job = await c.schedule(JobDef(task="stamp", args=[1], schedule=At(at_ms=slot)))
    assert (await s.tick()).fired == 1

    async def running() -> bool:
        runs = await c.runs(job)
        return bool(runs) and runs[0].status is RunStatus.RUNNING

    # recorded in the read's one start_runs, as of the slot; its task waits for the slot
    await _wait_for(running)
    [run] = await c.runs(job)
    assert (run.started_ms, run.worker) == (slot, w.id)
    assert not starts
    assert not await c.cancel_run(run.id)  # running: its worker is told

    async def cancelled() -> bool:
        return (await c.runs(job))[0].status is RunStatus.CANCELLED

    await _wait_for(cancelled)
    assert await clock.now_ms() < slot and not starts
    await w.stop(1.0)
    await asyncio.wait_for(loop, 10)
    assert not starts


async def test_a_limited_queues_run_read_ahead_is_held_queued_until_its_slot(
        make_engine: Any) -> None:
    # a queue-wide limit's slot or token is taken when the run really starts
    clock, starts, c, s, w = await _parts(make_engine)
    await c.set_queue_limits("default", QueueLimits(concurrency=5))
    await w.start()
    slot = await clock.now_ms() + 700
    job = await c.schedule(JobDef(task="stamp", args=[3], schedule=At(at_ms=slot)))
    assert (await s.tick()).fired == 1
    await w.tick(block_ms=None)
    [run] = await c.runs(job)
    assert run.status is RunStatus.QUEUED and len(w.inflight) == 1
    await w.drain()
    [run] = await c.runs(job)
    assert run.status is RunStatus.SUCCEEDED and run.started_ms is not None
    assert run.started_ms >= slot and starts[3] >= slot - 1


async def test_a_worker_stopping_runs_what_waits_for_its_slot_on_time_within_grace(
        make_engine: Any) -> None:
    clock, starts, c, s, w = await _parts(make_engine, block_s=0.05)
    loop = asyncio.create_task(w.run())
    job = await c.schedule(JobDef(task="stamp", args=[2],
                                  schedule=At(at_ms=await clock.now_ms() + 800)))
    assert (await s.tick()).fired == 1
    await _wait_for(lambda: _true(len(w.inflight) == 1))
    await w.stop(5.0)  # stop reading; what was read (held or running) finishes
    await asyncio.wait_for(loop, 10)
    [run] = await c.runs(job)
    assert run.status is RunStatus.SUCCEEDED
    assert starts[2] >= run.slot_ms - 1


async def _true(value: bool) -> bool:
    return value
