"""A live worker whose loop paused for longer than the run lease (Redis unreachable, a
stalled event loop) must not reclaim its own runs when it resumes: neither one still
executing nor one finished and waiting to be recorded, or they would run twice."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from rsched.clock import FakeClock
from rsched.models import JobDef, RunStatus
from rsched.tasks import TaskRegistry
from tests.support import invariants, system

QUEUES = ["default"]


async def test_worker_resuming_after_a_pause_past_the_lease_keeps_its_own_runs(
        make_engine: Callable[..., Any], clock: FakeClock) -> None:
    engine = await make_engine()
    reg = TaskRegistry()
    gates = {"short": asyncio.Event(), "long": asyncio.Event()}
    calls: list[str] = []

    @reg.task(name="gate")
    async def gate(name: str) -> None:
        calls.append(name)
        await gates[name].wait()

    w = system.worker(engine, clock, reg, lease_s=0.3, heartbeat_s=0.1)
    await w.start()
    c = system.client(engine, clock, reg)
    jobs = [await c.schedule(JobDef(task="gate", kwargs={"name": n})) for n in gates]
    assert (await system.scheduler(engine, clock).tick()).fired == 2
    await w.tick(block_ms=None)
    assert len(w.inflight) == 2
    gates["short"].set()  # finishes; its outcome waits in the worker's buffer
    while len(w.inflight) > 1:
        await asyncio.sleep(0.01)
    # The loop makes no Redis call (no extension, no flush) for twice the lease.
    await asyncio.sleep(0.6)

    assert await w.reclaim() == 0, "its own runs are not abandoned"
    gates["long"].set()
    await w.drain()
    for job in jobs:
        run = await engine.get_run(f"{job}:1")
        assert run is not None
        assert (run.status, run.attempt, run.worker) == (RunStatus.SUCCEEDED, 1, w.id)
    assert sorted(calls) == ["long", "short"], "each executed once"
    await invariants.check(engine, QUEUES, jobs, settled=True)
