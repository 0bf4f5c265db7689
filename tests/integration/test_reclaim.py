"""Reclaiming abandoned runs on a real redis-server (XAUTOCLAIM inside reclaim_runs.lua).

Idle time is Redis's own clock, so these tests wait (a few tenths of a second) for short
leases to pass; a "dead" worker is a consumer that read and started runs and then never
touched Redis again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from rsched.clock import FakeClock
from rsched.engine import Engine
from rsched.models import JobDef, RetryPolicy, RunStatus
from rsched.tasks import TaskRegistry
from tests.support import invariants, system

QUEUES = ["default"]


async def test_worker_resuming_after_a_pause_past_the_lease_keeps_its_own_runs(
        make_engine: Callable[..., Any], clock: FakeClock) -> None:
    """A live worker whose loop paused for longer than the run lease (Redis unreachable,
    a stalled event loop) must not reclaim its own runs when it resumes: neither one still
    executing nor one finished and waiting to be recorded, or they would run twice."""
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
        run = await engine.query.get_run(f"{job}:1")
        assert run is not None
        assert (run.status, run.attempt, run.worker) == (RunStatus.SUCCEEDED, 1, w.id)
    assert sorted(calls) == ["long", "short"], "each executed once"
    await invariants.check(engine, QUEUES, jobs, settled=True)


def _counting_registry(calls: list[str]) -> TaskRegistry:
    reg = TaskRegistry()

    @reg.task(name="count")
    async def count(n: int) -> None:
        calls.append(f"n{n}")

    return reg


async def _die_holding(engine: Engine, consumer: str, clock: FakeClock) -> int:
    """A worker that reads and starts every queued run, then dies: returns how many."""
    await engine.runs.ensure_groups(QUEUES)
    runs = await engine.runs.read_runs(consumer, QUEUES, 1000, None)
    by_shard: dict[int, list[Any]] = {}
    for d in runs:
        by_shard.setdefault(d.shard, []).append(d)
    for shard, ds in by_shard.items():
        assert set((await engine.runs.start_runs(clock.ms, consumer, {shard: ds}))[shard]) == {0}
    return len(runs)


async def test_two_workers_reclaiming_at_once_split_a_dead_workers_runs(
        make_engine: Callable[..., Any], clock: FakeClock) -> None:
    """Concurrent reclaimers never both take one run: XAUTOCLAIM and the attempt bump
    happen in one script, so each run gets exactly one new attempt, on one worker."""
    engine = await make_engine()
    calls: list[str] = []
    reg = _counting_registry(calls)
    c = system.client(engine, clock, reg)
    jobs = [await c.schedule(JobDef(task="count", kwargs={"n": i})) for i in range(200)]
    assert (await system.scheduler(engine, clock).tick()).fired == 200
    assert await _die_holding(engine, "dead-worker", clock) == 200
    await asyncio.sleep(0.4)  # past the 0.3 s lease

    b, c2 = (system.worker(engine, clock, reg, lease_s=0.3, heartbeat_s=0.1, concurrency=500)
             for _ in range(2))
    taken = await asyncio.gather(b.reclaim(), c2.reclaim())
    assert sum(taken) == 200
    await asyncio.gather(b.drain(), c2.drain())
    assert sorted(calls) == sorted(f"n{i}" for i in range(200)), "each run executed once"
    summary = await invariants.check(engine, QUEUES, jobs, settled=True)
    assert {h["att"] for h in summary.runs.values()} == {"2"}
    assert {h["worker"] for h in summary.runs.values()} <= {b.id, c2.id}


async def test_run_whose_workers_keep_dying_is_dead_lettered_after_max_attempts(
        make_engine: Callable[..., Any], clock: FakeClock) -> None:
    engine = await make_engine()
    calls: list[str] = []
    reg = _counting_registry(calls)
    job = await system.client(engine, clock, reg).schedule(
        JobDef(task="count", kwargs={"n": 1}, retry=RetryPolicy(max_attempts=2)))
    assert (await system.scheduler(engine, clock).tick()).fired == 1
    await _die_holding(engine, "first-victim", clock)
    await asyncio.sleep(0.4)
    # The second worker reclaims it (attempt 2) and dies too, before running it.
    second = system.worker(engine, clock, reg, lease_s=0.3, heartbeat_s=0.1)
    [d] = await engine.runs.reclaim_runs(engine.keys_for(job).shard, "default", clock.ms,
                                    second.id, 300, 10, 3_600_000)
    assert d.attempt == 2
    await asyncio.sleep(0.4)
    third = system.worker(engine, clock, reg, lease_s=0.3, heartbeat_s=0.1)
    assert await third.reclaim() == 0, "attempts exhausted: dead-lettered, not run"
    run = await engine.query.get_run(f"{job}:1")
    assert run is not None and (run.status, run.attempt) == (RunStatus.DEAD, 2)
    [dead] = await engine.query.dead_letters()
    assert (dead.run_id, dead.attempt) == (run.id, 2) and "lease expired" in dead.error
    assert calls == []
    await invariants.check(engine, QUEUES, [job], settled=True)
