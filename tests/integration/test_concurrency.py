"""Schedulers racing on, and crashing in, the same shards of a real redis-server.

Exactly-once per slot rests on fire_due's compare-and-set on the score read, not on
leases: these schedulers use static shard assignment (every shard), so nothing but the
CAS keeps them apart. Time is a FakeClock shared by all of them and advanced step by step.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from rsched import codec
from rsched.clock import FakeClock
from rsched.engine import DueItem, Engine, Fire
from rsched.models import At, Cron, Every, JobDef, Misfire, Schedule
from rsched.roles.scheduler import Scheduler
from rsched.settings import SchedulerSettings
from rsched.tasks import TaskRegistry
from rsched.timing import decide
from tests.support import invariants, system

QUEUES = ["default"]


def _registry() -> TaskRegistry:
    reg = TaskRegistry()

    @reg.task(name="noop")
    async def noop() -> None:
        return None

    return reg


def _mixed_schedule(i: int, t0: int) -> Schedule:
    """1,000 jobs with several slots each in a few seconds: intervals of different
    periods and phases, 6-field crons on whole seconds, and some one-shots."""
    kind = i % 10
    if kind < 6:
        return Every(every_ms=500 + 100 * (i % 7), start_ms=t0 + (i * 37) % 1000)
    if kind < 9:
        return Cron(expr=f"*/{1 + i % 3} * * * * *")
    return At(at_ms=t0 + (i * 53) % 5000)


async def _schedule_all(engine: Engine, clock: FakeClock, n: int,
                        make: Callable[[int, int], Schedule]) -> dict[str, Schedule]:
    c = system.client(engine, clock, _registry())
    jobs: dict[str, Schedule] = {}
    for i in range(n):
        sched = make(i, clock.ms)
        # catch_up: every slot fires once even when several are due at one tick (the
        # default fire_once would coalesce them into one run; test_operations covers that).
        jobs[await c.schedule(JobDef(id=f"job{i:04d}", task="noop", schedule=sched,
                                     misfire=Misfire.CATCH_UP))] = sched
    return jobs


def _plan(items: list[DueItem], now_ms: int) -> list[Fire]:
    """What any scheduler commits for these due members (same rule as Scheduler)."""
    out = []
    for i in items:
        d = decide(codec.decode_trigger(i.sched), int(float(i.score)), now_ms)
        out.append(Fire(i.member, i.score, d.next_ms, d.fire, d.skipped))
    return out


async def _engine_on_own_connection(make_engine: Callable[..., Any], redis_url: str,
                                    clients: list[Any]) -> Engine:
    client = aioredis.Redis.from_url(redis_url)
    clients.append(client)
    engine: Engine = await make_engine(client=client)
    return engine


def _assert_every_slot_once(fires: dict[tuple[str, int], set[str]], jobs: dict[str, Schedule],
                            created_ms: int, until_ms: int) -> int:
    twice = invariants.doubled(fires)
    assert not twice, f"{len(twice)} slots fired twice, e.g. {list(twice.items())[:3]}"
    by_job: dict[str, list[int]] = {j: [] for j in jobs}
    for job, slot in fires:
        by_job[job].append(slot)
    for job, sched in jobs.items():
        want = invariants.expected_slots(sched, created_ms, until_ms)
        assert sorted(by_job[job]) == want, f"{job} ({sched}): fired {sorted(by_job[job])}"
    return len(fires)


async def test_two_schedulers_racing_on_all_shards_fire_every_slot_exactly_once(
        make_engine: Callable[..., Any], redis_url: str, clock: FakeClock) -> None:
    clients: list[Any] = []
    try:
        ea = await _engine_on_own_connection(make_engine, redis_url, clients)
        eb = await _engine_on_own_connection(make_engine, redis_url, clients)
        created = clock.ms
        jobs = await _schedule_all(ea, clock, 1000, _mixed_schedule)
        # Different batch sizes so the two read overlapping, shifted windows of the index.
        a = system.scheduler(ea, clock, batch=40)
        b = system.scheduler(eb, clock, batch=67)
        assert a.static and b.static and a.owned == b.owned == {0, 1, 2, 3}
        fired_a = fired_b = 0
        for _ in range(30):
            ra, rb = await asyncio.gather(a.tick(), b.tick())
            fired_a, fired_b = fired_a + ra.fired, fired_b + rb.fired
            clock.advance(200)
        until = clock.ms - 200
        fires = await invariants.fires_from_queues(ea, QUEUES)
        total = _assert_every_slot_once(fires, jobs, created, until)
        assert total > 5000, "several slots per job"
        assert fired_a + fired_b == total, "each fire counted by exactly one scheduler"
        await invariants.check(ea, QUEUES, list(jobs), settled=False)
    finally:
        for c in clients:
            await c.aclose()


async def _peek(engine: Engine, shard: int, now_ms: int) -> list[DueItem]:
    """The due items of one shard, as the scheduler reads them (fire_and_peek)."""
    _, peeks = await engine.firing.fire_and_peek(now_ms, "", {}, [shard], 1000)
    return peeks[shard][1]


async def _fire(engine: Engine, shard: int, now_ms: int, plan: list[Fire]) -> int:
    """Commit a plan for one shard as the scheduler does; the runs it enqueued."""
    codes, _ = await engine.firing.fire_and_peek(now_ms, "", {shard: plan}, [], 0)
    return codes[shard]


async def test_compare_and_set_lets_exactly_one_of_two_identical_fires_through(
        make_engine: Callable[..., Any], redis_url: str, clock: FakeClock) -> None:
    """The race at its narrowest: both schedulers read the same due members and commit the
    same plan at the same moment; each slot is enqueued by exactly one of them."""
    clients: list[Any] = []
    try:
        ea = await _engine_on_own_connection(make_engine, redis_url, clients)
        eb = await _engine_on_own_connection(make_engine, redis_url, clients)
        jobs = await _schedule_all(ea, clock, 400,
                                   lambda i, t0: Every(every_ms=1000, start_ms=t0))
        won = [0, 0]
        for _ in range(3):
            for shard in range(ea.shards):
                items_a = await _peek(ea, shard, clock.ms)
                items_b = await _peek(eb, shard, clock.ms)
                assert items_a == items_b and items_a
                ra, rb = await asyncio.gather(
                    _fire(ea, shard, clock.ms, _plan(items_a, clock.ms)),
                    _fire(eb, shard, clock.ms, _plan(items_b, clock.ms)))
                assert ra + rb == len(items_a)
                won[0], won[1] = won[0] + ra, won[1] + rb
            clock.advance(1000)
        fires = await invariants.fires_from_queues(ea, QUEUES)
        assert _assert_every_slot_once(fires, jobs, clock.ms - 3000, clock.ms - 1000) == 1200
        assert sum(won) == 1200
        await invariants.check(ea, QUEUES, list(jobs), settled=False)
    finally:
        for c in clients:
            await c.aclose()


async def test_scheduler_crashing_between_read_and_fire_loses_no_slot(
        make_engine: Callable[..., Any], redis_url: str, clock: FakeClock) -> None:
    """A scheduler reads the due batch, plans it, and dies before fire_due; a fresh one
    fires every slot exactly once. When the dead one turns out to be only paused and
    commits its stale plan late, the compare-and-set rejects all of it."""
    clients: list[Any] = []
    try:
        doomed = await _engine_on_own_connection(make_engine, redis_url, clients)
        created = clock.ms
        jobs = await _schedule_all(doomed, clock, 300,
                                   lambda i, t0: Every(every_ms=700, start_ms=t0 + i))
        clock.advance(1500)
        stale: dict[int, list[Fire]] = {}
        for shard in range(doomed.shards):
            items = await _peek(doomed, shard, clock.ms)
            stale[shard] = _plan(items, clock.ms)
        assert sum(map(len, stale.values())) == 300
        # ...and it "crashes" here: nothing is fired, nothing was removed from the index.
        fresh_engine = await _engine_on_own_connection(make_engine, redis_url, clients)
        fresh = system.scheduler(fresh_engine, clock)
        fired = await system.fire_until_idle(fresh)
        assert fired == sum(len(invariants.expected_slots(s, created, clock.ms))
                            for s in jobs.values())
        late = [await _fire(doomed, shard, clock.ms, plan) for shard, plan in stale.items()]
        assert late == [0] * doomed.shards, "a stale plan must not fire anything"
        for _ in range(5):
            clock.advance(300)
            await system.fire_until_idle(fresh)
        fires = await invariants.fires_from_queues(fresh_engine, QUEUES)
        _assert_every_slot_once(fires, jobs, created, clock.ms)
        await invariants.check(fresh_engine, QUEUES, list(jobs), settled=False)
    finally:
        for c in clients:
            await c.aclose()


async def test_schedulers_cancelled_at_random_points_lose_and_double_no_slot(
        make_engine: Callable[..., Any], redis_url: str, clock: FakeClock) -> None:
    """Over many rounds a scheduler is killed (its tick cancelled, its connection dropped)
    at a random point: before reading, between reading and firing, or with a fire_due
    in flight whose reply never arrives. A survivor keeps ticking; at the end every slot
    fired exactly once."""
    rng = random.Random(20240611)
    clients: list[Any] = []
    try:
        survivor_engine = await _engine_on_own_connection(make_engine, redis_url, clients)
        created = clock.ms
        jobs = await _schedule_all(survivor_engine, clock, 500, _mixed_schedule)
        survivor = system.scheduler(survivor_engine, clock, batch=50)
        killed_mid_tick = 0
        for _ in range(40):
            clock.advance(rng.randrange(50, 300))
            client = aioredis.Redis.from_url(redis_url)
            engine: Engine = await make_engine(client=client)
            victim = Scheduler(engine, SchedulerSettings(shards=[0, 1, 2, 3],
                                                         batch=rng.randrange(5, 60)), clock)
            task = asyncio.create_task(victim.tick())
            for _ in range(rng.randrange(0, 12)):
                await asyncio.sleep(0)
            if not task.done():
                killed_mid_tick += 1
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await client.aclose()
            if rng.random() < 0.5:
                await survivor.tick()
        await system.fire_until_idle(survivor)
        assert killed_mid_tick > 10, "most victims died inside their tick"
        fires = await invariants.fires_from_queues(survivor_engine, QUEUES)
        _assert_every_slot_once(fires, jobs, created, clock.ms)
        await invariants.check(survivor_engine, QUEUES, list(jobs), settled=False)
    finally:
        for c in clients:
            await c.aclose()
