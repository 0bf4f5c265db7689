"""End-to-end job lifecycle on a real redis-server, time driven by a FakeClock."""

from __future__ import annotations

from typing import Any

from rsched.clock import FakeClock
from rsched.models import At, Every, Immediate, JobDef, JobState, RetryPolicy, RunStatus
from rsched.tasks import TaskRegistry
from tests.support import system


def registry_with(calls: list[Any]) -> TaskRegistry:
    reg = TaskRegistry()

    @reg.task(name="record")
    async def record(x: int = 0) -> int:
        calls.append(x)
        return x

    return reg


async def test_immediate_job_runs_once_and_succeeds(make_engine: Any, clock: FakeClock) -> None:
    engine = await make_engine()
    calls: list[Any] = []
    reg = registry_with(calls)
    c, s, w = system.client(engine, clock, reg), system.scheduler(engine, clock), \
        system.worker(engine, clock, reg)
    await w.start()
    job_id = await c.schedule(JobDef(task="record", args=[7], schedule=Immediate()))
    assert (await s.tick()).fired == 1
    assert (await s.tick()).fired == 0
    await w.tick(block_ms=None)
    await w.drain()
    assert calls == [7]
    runs = await c.runs(job_id)
    assert [r.status for r in runs] == [RunStatus.SUCCEEDED]
    assert (await c.get(job_id)).state is JobState.DONE


async def test_every_job_fires_each_slot(make_engine: Any, clock: FakeClock) -> None:
    engine = await make_engine()
    calls: list[Any] = []
    reg = registry_with(calls)
    c, s = system.client(engine, clock, reg), system.scheduler(engine, clock)
    await c.schedule(JobDef(task="record", schedule=Every(every_ms=1000)))
    fired = 0
    for _ in range(5):
        fired += (await s.tick()).fired
        clock.advance(1000)
    assert fired == 5


async def test_at_in_future_waits(make_engine: Any, clock: FakeClock) -> None:
    engine = await make_engine()
    reg = registry_with([])
    c, s = system.client(engine, clock, reg), system.scheduler(engine, clock)
    await c.schedule(JobDef(task="record", schedule=At(at_ms=clock.ms + 5000),
                            retry=RetryPolicy(max_attempts=1)))
    assert (await s.tick()).fired == 0
    clock.advance(4999)
    assert (await s.tick()).fired == 0
    clock.advance(1)
    assert (await s.tick()).fired == 1


async def test_cancel_signal_stops_running_run_through_pubsub(make_engine: Any,
                                                              clock: FakeClock) -> None:
    import asyncio

    engine = await make_engine()
    reg = TaskRegistry()
    started = asyncio.Event()

    @reg.task(name="forever")
    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    c, s = system.client(engine, clock, reg), system.scheduler(engine, clock)
    w = system.worker(engine, clock, reg, block_s=0.05)
    loop_task = asyncio.create_task(w.run())
    job = await c.schedule(JobDef(task="forever", timeout_s=7200))
    await s.tick()
    await asyncio.wait_for(started.wait(), 5)
    await c.cancel(job)
    for _ in range(200):
        runs = await c.runs(job)
        if runs and runs[0].status is RunStatus.CANCELLED:
            break
        await asyncio.sleep(0.02)
    assert [r.status for r in await c.runs(job)] == [RunStatus.CANCELLED]
    await w.stop(0.1)
    await asyncio.wait_for(loop_task, 5)


async def test_wake_signal_fires_earlier_job_without_waiting_max_sleep(
        make_engine: Any) -> None:
    import asyncio
    import time

    from rsched.roles.scheduler import Scheduler
    from rsched.settings import SchedulerSettings

    engine = await make_engine(shards=1)
    clock = engine.clock()
    reg = registry_with([])
    c = system.client(engine, clock, reg)
    sched = Scheduler(engine, SchedulerSettings(shards=[0], max_sleep_s=30.0), clock)
    loop_task = asyncio.create_task(sched.run())
    await asyncio.sleep(0.2)  # scheduler is now asleep for up to 30 s
    t0 = time.monotonic()
    job = await c.schedule(JobDef(task="record", schedule=Immediate()))
    for _ in range(300):
        if (await c.get(job)).runs == 1:
            break
        await asyncio.sleep(0.01)
    assert (await c.get(job)).runs == 1
    assert time.monotonic() - t0 < 10, "woken by the signal, not by the 30 s sleep"
    await sched.stop()
    await asyncio.wait_for(loop_task, 5)


async def test_dead_scheduler_shards_are_taken_over_within_lease(make_engine: Any,
                                                                 clock: FakeClock) -> None:
    from rsched.roles.scheduler import Scheduler
    from rsched.settings import SchedulerSettings

    engine = await make_engine(shards=4)
    cfg = SchedulerSettings(lease_s=0.3)
    a = Scheduler(engine, cfg, clock, owner="a")
    b = Scheduler(engine, cfg, clock, owner="b")
    await a.tick()
    assert a.owned == {0, 1, 2, 3}
    await b.tick()
    assert b.owned == set(), "a holds every lease"
    clock.advance(100)
    await a.tick()  # a sees two schedulers alive and sheds half
    clock.advance(100)
    await b.tick()
    assert len(a.owned) == 2 and len(b.owned) == 2 and not a.owned & b.owned
    # a dies without releasing; after its lease expires b holds everything
    import asyncio

    await asyncio.sleep(0.35)
    clock.advance(400)
    await b.tick()
    assert b.owned == {0, 1, 2, 3}


async def test_live_worker_extends_lease_so_long_run_is_not_reclaimed(make_engine: Any) -> None:
    import asyncio


    engine = await make_engine(shards=1)
    clock = engine.clock()
    reg = TaskRegistry()

    @reg.task(name="long")
    async def long() -> str:
        await asyncio.sleep(2.4)
        return "done"

    c, s = system.client(engine, clock, reg), system.scheduler(engine, clock)
    # a 1 s lease (extended every third of it): a loop stalled 0.6 s by a busy machine
    # must not look like a dead worker
    w = system.worker(engine, clock, reg, lease_s=1.0, heartbeat_s=0.1, block_s=0.05,
                      reclaim_every_s=3600)
    thief = system.worker(engine, clock, reg, lease_s=1.0, heartbeat_s=0.1)
    loop_task = asyncio.create_task(w.run())
    job = await c.schedule(JobDef(task="long", timeout_s=10))
    await s.tick()
    stolen = 0
    for _ in range(20):  # for 2 s, well past the 1 s lease, try to reclaim every 0.1 s
        await asyncio.sleep(0.1)
        stolen += await thief.reclaim()
    for _ in range(100):
        runs = await c.runs(job)
        if runs and runs[0].status is RunStatus.SUCCEEDED:
            break
        await asyncio.sleep(0.05)
    [run] = await c.runs(job)
    assert stolen == 0
    assert (run.status, run.attempt, run.worker) == (RunStatus.SUCCEEDED, 1, w.id)
    await w.stop(0.1)
    await asyncio.wait_for(loop_task, 5)


async def test_worker_never_runs_more_task_bodies_than_its_concurrency(
        make_engine: Any, clock: FakeClock) -> None:
    # COUNT applies per stream: with 16 shard streams, a read for 3 free slots takes up
    # to one run from each stream. The extra runs wait for a slot, they never run at once
    # (a task's own client sized to the concurrency, e.g. redis-py's pool, would fail).
    import asyncio

    engine = await make_engine()
    running, peak, gate = 0, 0, asyncio.Event()
    reg = TaskRegistry()

    @reg.task(name="hold")
    async def hold() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await gate.wait()
        running -= 1

    c, s, w = system.client(engine, clock, reg), system.scheduler(engine, clock), \
        system.worker(engine, clock, reg, concurrency=3)
    await w.start()
    for _ in range(40):
        await c.schedule(JobDef(task="hold", schedule=Immediate()))
    assert (await s.tick()).fired == 40
    await w.tick(block_ms=None)
    await asyncio.sleep(0.05)
    assert len(w.inflight) > 3  # the read overshot: the case under test happened
    assert running == 3, (running, len(w.inflight))
    gate.set()
    await w.drain()
    assert peak == 3
