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
from rsched.engine import Delivery, Engine, Outcome
from rsched.engine.keys import WORKER_GROUP
from rsched.models import JobDef, RetryPolicy, RunStatus
from rsched.tasks import RunContext, TaskRegistry
from tests.support import invariants, system

QUEUES = ["default"]


async def test_worker_resuming_after_a_pause_past_the_lease_keeps_its_own_runs(
        make_engine: Callable[..., Any], clock: FakeClock) -> None:
    """A live worker whose loop paused for longer than the run lease (Redis unreachable,
    a stalled event loop) must not reclaim its own runs when it resumes as new attempts
    while they still execute. A finished run waiting to be recorded is recorded once; a
    run still executing has lost its lease on the worker's own clock, so its handler is
    cancelled at once and records nothing (another worker could be running it by now),
    and the run completes once, as attempt 2."""
    engine = await make_engine()
    reg = TaskRegistry()
    gates = {"short": asyncio.Event(), "long": asyncio.Event()}
    calls: list[str] = []

    @reg.task(name="gate")
    async def gate(name: str) -> None:
        calls.append(f"start {name}")
        await gates[name].wait()
        calls.append(f"end {name}")

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
    assert not w.inflight, "the long run's handler was cancelled when its lease lapsed"

    assert await w.reclaim() == 1, "only the given-up run, as a new attempt"
    gates["long"].set()
    await w.drain()
    short, long = [await engine.query.get_run(f"{job}:1") for job in jobs]
    assert short is not None and long is not None
    assert (short.status, short.attempt, short.worker) == (RunStatus.SUCCEEDED, 1, w.id)
    assert (long.status, long.attempt, long.worker) == (RunStatus.SUCCEEDED, 2, w.id)
    assert sorted(calls) == ["end long", "end short", "start long", "start long",
                             "start short"], "each ran to its end once"
    assert calls[-2:] == ["start long", "end long"]
    await invariants.check(engine, QUEUES, jobs, settled=True)


async def _read_and_start(engine: Engine, consumer: str, clock: FakeClock) -> list[Delivery]:
    await engine.runs.ensure_groups(QUEUES)
    runs = await engine.runs.read_runs(consumer, QUEUES, 1000, None)
    for d in runs:
        codes = await engine.runs.start_runs(clock.ms, consumer, {d.shard: [d]})
        assert codes == {d.shard: [0]}
    return runs


async def _pending_owner(engine: Engine, d: Delivery) -> str:
    [p] = await engine.core.redis.xpending_range(
        engine.core.shard_keys[d.shard].queue(d.queue), WORKER_GROUP,
        min=d.entry_id, max=d.entry_id, count=1)
    return str(p["consumer"].decode())


async def test_extending_a_stale_attempt_is_refused_and_does_not_take_the_entry_back(
        make_engine: Callable[..., Any], clock: FakeClock) -> None:
    """A worker frozen past its lease lost its run to a reclaim (attempt 2 on another
    worker); its lease extension names attempt 1 and is refused, and the entry stays with
    the new owner, whose idle time keeps counting (the old worker cannot keep it alive)."""
    engine = await make_engine()
    job = await system.client(engine, clock, _counting_registry([])).schedule(
        JobDef(task="count", kwargs={"n": 1}))
    assert (await system.scheduler(engine, clock).tick()).fired == 1
    [old] = await _read_and_start(engine, "frozen", clock)
    assert await engine.runs.extend_runs("frozen", [old]) == [0], "its own live run: extended"
    await asyncio.sleep(0.4)
    [new] = await engine.runs.reclaim_runs(old.shard, "default", clock.ms, "thief", 300, 10,
                                      3_600_000)
    assert (new.run_id, new.attempt, new.entry_id) == (old.run_id, 2, old.entry_id)

    assert await engine.runs.extend_runs("frozen", [old]) == [-3]
    assert await _pending_owner(engine, old) == "thief", "not taken back"
    assert await engine.runs.extend_runs("thief", [old]) == [-3], "attempt 1 is over, whoever asks"
    assert await engine.runs.extend_runs("thief", [new]) == [0]
    assert await engine.runs.complete_runs(clock.ms, 3_600_000, {new.shard: [
        Outcome(new.run_id, 2, RunStatus.SUCCEEDED)]}) == [0]
    assert await engine.runs.extend_runs("thief", [new]) == [-3], "ended: nothing to extend"
    run = await engine.query.get_run(f"{job}:1")
    assert run is not None and (run.status, run.attempt) == (RunStatus.SUCCEEDED, 2)


async def test_run_frozen_between_start_and_its_handler_is_never_started_late(
        make_engine: Callable[..., Any], clock: FakeClock) -> None:
    """A worker that stalls after marking a run running but before its handler starts
    (here: past the lease inside start_runs) must not start it once the lease may have
    lapsed: by then another worker has reclaimed and finished it."""
    engine = await make_engine()
    calls: list[int] = []
    reg = TaskRegistry()

    @reg.task(name="ctx")
    async def ctx_task(ctx: RunContext) -> None:
        calls.append(ctx.attempt)

    frozen = system.worker(engine, clock, reg, lease_s=0.3, heartbeat_s=0.1)
    thief = system.worker(engine, clock, reg, lease_s=0.3, heartbeat_s=0.1)
    await frozen.start()
    job = await system.client(engine, clock, reg).schedule(JobDef(task="ctx"))
    assert (await system.scheduler(engine, clock).tick()).fired == 1
    start_runs = engine.runs.start_runs

    async def start_then_stall(*args: Any) -> dict[int, list[int]]:
        codes = await start_runs(*args)
        await asyncio.sleep(0.4)  # frozen past the lease: the thief takes the run meanwhile
        assert await thief.reclaim() == 1
        await thief.drain()
        return codes

    engine.runs.start_runs = start_then_stall  # type: ignore[method-assign]
    assert (await frozen.tick(block_ms=None)).started == 1
    await frozen.drain()
    assert calls == [2], "only the reclaimed attempt ran"
    run = await engine.query.get_run(f"{job}:1")
    assert run is not None
    assert (run.status, run.attempt, run.worker) == (RunStatus.SUCCEEDED, 2, thief.id)
    await invariants.check(engine, QUEUES, [job], settled=True)


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


async def test_handler_reads_its_run_id_and_a_reclaimed_run_keeps_it_with_a_higher_attempt(
        make_engine: Callable[..., Any], clock: FakeClock) -> None:
    engine = await make_engine()
    seen: list[RunContext] = []
    reg = TaskRegistry()

    @reg.task(name="ctx")
    def ctx_task(n: int, *, run: RunContext) -> int:  # sync: runs in the pool, same context
        seen.append(run)
        return n

    c = system.client(engine, clock, reg)
    first = await c.schedule(JobDef(task="ctx", kwargs={"n": 1}, timeout_s=5))
    assert (await system.scheduler(engine, clock).tick()).fired == 1
    w = system.worker(engine, clock, reg, lease_s=0.3, heartbeat_s=0.1)
    await w.start()
    await w.tick(block_ms=None)
    await w.drain()
    [ctx] = seen
    assert (ctx.job_id, ctx.run_id, ctx.attempt, ctx.queue) == (first, f"{first}:1", 1,
                                                                "default")
    assert ctx.deadline_ms == clock.ms + 5000
    run = await engine.query.get_run(f"{first}:1")
    assert run is not None and ctx.slot_ms == run.slot_ms

    second = await c.schedule(JobDef(task="ctx", kwargs={"n": 2}, timeout_s=None))
    assert (await system.scheduler(engine, clock).tick()).fired == 1
    assert await _die_holding(engine, "dead-worker", clock) == 1
    await asyncio.sleep(0.4)
    assert await w.reclaim() == 1
    await w.drain()
    ctx = seen[-1]
    assert (ctx.run_id, ctx.attempt, ctx.deadline_ms) == (f"{second}:1", 2, None)
    await invariants.check(engine, QUEUES, [first, second], settled=True)
