"""Queue-wide limits and priorities (real redis-server, real workers in this process on the
Redis clock): a queue's concurrency limit across workers, its rate limit, and the
priority rule under a backlog."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rsched.client import Client
from rsched.errors import Code
from rsched.models import At, JobDef, QueueLimits, Run, RunStatus
from rsched.tasks import TaskRegistry
from tests.support import system

LATER = At(at_ms=4_000_000_000_000)  # jobs that only run when asked (run_now)
FAST = {"block_s": 0.05, "limit_retry_s": 0.05, "queue_config_s": 0.05}


def peak_running(runs: list[Run]) -> int:
    """Most runs running at once, from their recorded start and end instants (an end
    at the instant of a start counts first)."""
    steps = sorted([(r.started_ms or 0, 1) for r in runs] + [(r.finished_ms or 0, -1)
                                                             for r in runs])
    running = peak = 0
    for _, step in steps:
        running += step
        peak = max(peak, running)
    return peak


async def run_all(c: Client, roles: list[Any], job_ids: list[str], runs_each: int,
                  timeout_s: float) -> list[Run]:
    """Start the roles, wait until every run of the jobs succeeded, stop the roles."""
    tasks = [asyncio.create_task(r.run()) for r in roles]
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            runs = [r for j in job_ids for r in await c.runs(j, 100)]
            if len(runs) == len(job_ids) * runs_each and all(
                    r.status is RunStatus.SUCCEEDED for r in runs):
                return runs
        raise AssertionError(f"not all runs succeeded in {timeout_s}s")
    finally:
        for r in roles:
            await r.stop(1.0) if hasattr(r, "drain") else await r.stop()
        await asyncio.gather(*tasks)


async def test_a_queue_limit_of_two_holds_across_three_workers(make_engine: Any) -> None:
    engine = await make_engine()
    clock = engine.clock()
    reg = TaskRegistry()

    @reg.task(name="busy")
    async def busy() -> None:
        await asyncio.sleep(0.1)

    c = system.client(engine, clock, reg)
    await c.set_queue_limits("default", QueueLimits(concurrency=2))
    jobs = [await c.schedule(JobDef(task="busy", schedule=LATER)) for _ in range(4)]
    for job_id in jobs:  # four jobs over the shards, no per-job limit
        for _ in range(4):
            await c.run_now(job_id)
    workers = [system.worker(engine, clock, reg, **FAST) for _ in range(3)]
    runs = await run_all(c, [system.scheduler(engine, clock), *workers], jobs, 4, 20)
    assert peak_running(runs) == 2  # the limit was reached, never passed
    assert len({r.worker for r in runs}) > 1  # and it held across workers
    assert await engine.core.redis.zcard(engine.core.queue_keys("default").held) == 0


async def test_a_rate_limit_delays_runs_and_drops_none(make_engine: Any) -> None:
    engine = await make_engine()
    clock = engine.clock()
    reg = TaskRegistry()

    @reg.task(name="quick")
    async def quick() -> None:
        return None

    c = system.client(engine, clock, reg)
    await c.set_queue_limits("default", QueueLimits(rate=10, period_s=1.0))
    jobs = [await c.schedule(JobDef(task="quick", schedule=LATER)) for _ in range(5)]
    for job_id in jobs:
        for _ in range(10):
            await c.run_now(job_id)
    began = time.monotonic()
    runs = await run_all(c, [system.scheduler(engine, clock),
                             system.worker(engine, clock, reg, **FAST)], jobs, 10, 9)
    assert time.monotonic() - began >= 4.5  # 50 starts at 10/s, one every 100 ms
    starts = sorted(r.started_ms or 0 for r in runs)
    assert max(sum(1 for s in starts if t <= s < t + 1000) for t in starts) <= 11


async def test_higher_priorities_start_first_and_lower_ones_still_start(
        make_engine: Any) -> None:
    engine = await make_engine(shards=1)
    clock = engine.clock()
    reg = TaskRegistry()
    started: list[tuple[str, int]] = []  # (task, batch)
    batch = 0

    for name in ("high", "low"):
        @reg.task(name=name)
        async def record(name: str = name) -> None:
            started.append((name, batch))

    c = system.client(engine, clock, reg)
    for _ in range(40):
        await c.run_now(await c.schedule(JobDef(task="high", schedule=LATER, priority=9)))
        await c.run_now(await c.schedule(JobDef(task="low", schedule=LATER)))  # default 0
    w = system.worker(engine, clock, reg, concurrency=10, queue_config_s=60)
    await w.start()
    while len(started) < 80 and batch < 40:
        batch += 1
        await w.tick(block_ms=None)
        await w.drain()
    per_batch = [[n for n, b in started if b == i] for i in range(1, batch + 1)]
    # Room 10 split by level + 1 (10:1): nine high runs and one low run a batch
    while_high_left = [names for names in per_batch[:4]]
    assert all(names.count("high") == 9 and names.count("low") == 1
               for names in while_high_left), per_batch
    assert len(started) == 80 and batch <= 10  # the low backlog is not held back later

    def mean(name: str) -> float:
        seen = [i for i, (n, _) in enumerate(started) if n == name]
        return sum(seen) / len(seen)

    assert mean("high") < mean("low")


async def test_a_queue_default_priority_orders_queues_a_worker_reads(
        make_engine: Any) -> None:
    engine = await make_engine(shards=1)
    clock = engine.clock()
    reg = TaskRegistry()
    started: list[str] = []

    @reg.task(name="t")
    async def t(queue: str) -> None:
        started.append(queue)

    c = system.client(engine, clock, reg)
    await c.set_queue_limits("urgent", QueueLimits(priority=5))
    assert (await c.queue_limits("urgent")).priority == 5
    for _ in range(12):
        for q in ("bulk", "urgent"):
            await c.run_now(await c.schedule(JobDef(task="t", kwargs={"queue": q}, queue=q,
                                                    schedule=LATER)))
    w = system.worker(engine, clock, reg, queues=["bulk", "urgent"], concurrency=7)
    await w.start()
    await w.tick(block_ms=None)
    await w.drain()
    assert started.count("urgent") == 6 and started.count("bulk") == 1  # 6:1


async def test_take_queue_slots_counts_leases_and_spaces_starts(make_engine: Any) -> None:
    engine = await make_engine()
    lim, t = engine.limits, 1_000_000
    await lim.set_queue_limits("q", QueueLimits(concurrency=2))
    got = await lim.take_queue_slots(t, 5_000, {"q": ["a/1", "b/1", "c/1"]})
    assert got["q"].codes == [Code.OK, Code.OK, Code.DEFERRED]
    again = await lim.take_queue_slots(t + 10, 5_000, {"q": ["a/1", "c/1"]})
    assert again["q"].codes == [Code.OK, Code.DEFERRED]  # a holder taking again: renewed
    await lim.release_queue_slots({"q": ["a/1"]})
    assert (await lim.take_queue_slots(t + 20, 5_000, {"q": ["c/1"]}))["q"].codes == [Code.OK]
    # b's worker stopped renewing: its slot comes back when its lease passes
    await lim.renew_queue_slots(t + 9_000, {"q": ["c/1", "gone/1"]})  # XX: not re-added
    assert (await lim.take_queue_slots(t + 5_001, 5_000, {"q": ["d/1"]}))["q"].codes == [
        Code.OK]
    held = await engine.core.redis.zrange(engine.core.queue_keys("q").held, 0, -1)
    assert sorted(held) == [b"c/1", b"d/1"]

    await lim.set_queue_limits("r", QueueLimits(rate=10, period_s=1.0, burst=2))
    got = await lim.take_queue_slots(t, 5_000, {"r": ["a/1", "b/1", "c/1", "d/1"]})
    assert got["r"].codes == [Code.OK, Code.OK, Code.RATE_LIMITED, Code.RATE_LIMITED]
    assert (got["r"].wait_ms, got["r"].interval_ms) == (100, 100.0)
    assert (await lim.take_queue_slots(t + 99, 5_000, {"r": ["c/1"]}))["r"].codes == [
        Code.RATE_LIMITED]
    assert (await lim.take_queue_slots(t + 100, 5_000, {"r": ["c/1"]}))["r"].codes == [
        Code.OK]


async def test_a_reclaimed_run_holds_its_queue_slot_under_its_new_attempt(
        make_engine: Any) -> None:
    engine = await make_engine()
    clock = engine.clock()
    reg = TaskRegistry()
    calls: list[int] = []

    @reg.task(name="stuck_once")
    async def stuck_once() -> None:
        calls.append(1)
        if len(calls) == 1:
            await asyncio.sleep(60)  # the first worker "dies" with it

    c = system.client(engine, clock, reg)
    await c.set_queue_limits("default", QueueLimits(concurrency=1))
    run_id = await c.run_now(await c.schedule(JobDef(task="stuck_once", schedule=LATER)))
    held = engine.core.queue_keys("default").held
    dead = system.worker(engine, clock, reg, lease_s=0.2)
    await dead.start()
    await dead.tick(block_ms=None)
    await asyncio.sleep(0)
    assert await engine.core.redis.zrange(held, 0, -1) == [f"{run_id}/1".encode()]
    await asyncio.sleep(0.3)  # its lease passes (it never extends it)
    w = system.worker(engine, clock, reg, lease_s=0.2)
    await w.start()
    assert await w.reclaim() == 1
    assert await engine.core.redis.zrange(held, 0, -1) == [f"{run_id}/2".encode()]
    await w.drain()
    assert (await c.run(run_id)).status is RunStatus.SUCCEEDED  # type: ignore[union-attr]
    assert await engine.core.redis.zcard(held) == 0
    await dead.drain()
