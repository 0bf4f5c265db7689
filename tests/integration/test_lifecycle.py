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
