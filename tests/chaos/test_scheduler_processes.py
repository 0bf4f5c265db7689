"""Scheduler processes racing and dying on a real clock (real `rsched scheduler` processes).

The in-process versions with a FakeClock are in tests/integration/test_concurrency.py;
these run the real role loop (Redis TIME, sleeping until the head, wake signals, leases)
and count fires per (job, slot) from the queue streams (no worker trims them here).
"""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import Callable
from typing import Any

import pytest

from rsched.client import Client
from rsched.engine import Engine
from rsched.models import Every, JobDef, Misfire, Schedule
from tests.support import invariants
from tests.support.procs import Role, Roles, eventually

pytestmark = pytest.mark.chaos

QUEUES = ["default"]


async def _schedule(engine: Engine, schedules: list[Schedule]) -> dict[str, Schedule]:
    client = Client(engine, engine.clock())
    jobs: dict[str, Schedule] = {}
    for lo in range(0, len(schedules), 100):  # concurrently: all should exist before t0
        chunk = list(enumerate(schedules))[lo:lo + 100]
        # catch_up: each missed slot fires once (fire_once would coalesce them)
        ids = await asyncio.gather(*(client.schedule(JobDef(id=f"p{i:04d}", task="any",
                                                            schedule=sched,
                                                            misfire=Misfire.CATCH_UP))
                                     for i, sched in chunk))
        jobs.update(zip(ids, (sched for _, sched in chunk), strict=True))
    return jobs


async def _queued(engine: Engine) -> int:
    lengths = await engine.query.stream_lengths(QUEUES)
    return sum(n for k, n in lengths.items() if ":q:" in k)


async def _all_fired(engine: Engine) -> bool:
    return await engine.query.due_count() == 0


async def _assert_exactly_expected(engine: Engine, fires: dict[tuple[str, int], set[str]],
                                   jobs: dict[str, Schedule]) -> None:
    """Each job fired exactly the slots its schedule has from its creation on (a job
    created after its start_ms - the machine was slow to create them all - begins at its
    next future slot)."""
    twice = invariants.doubled(fires)
    assert not twice, f"{len(twice)} slots fired twice, e.g. {list(twice.items())[:3]}"
    got: dict[str, list[int]] = {j: [] for j in jobs}
    for job, slot in fires:
        got[job].append(slot)
    created = await invariants.created_ms(engine, list(jobs))
    for job, sched in jobs.items():
        want = invariants.expected_slots(sched, created[job], 2**62)
        assert sorted(got[job]) == want, f"{job}: fired {sorted(got[job])}, want {want}"


async def _stop(role: Role) -> None:
    role.signal(signal.SIGTERM)
    assert await role.wait_exit() == 0, role.log()


async def test_two_scheduler_processes_on_the_same_shards_fire_every_slot_once(
        make_engine: Callable[..., Any], roles: Roles) -> None:
    """Static assignment of every shard to both: no lease keeps them apart, only the
    compare-and-set in fire_due. 1,000 jobs, 6 slots each, all due within ~2 s."""
    engine = await make_engine()
    t0 = await engine.clock().now_ms() + 1500  # both are up by then
    jobs = await _schedule(engine, [
        Every(every_ms=300, start_ms=t0 + (i % 20) * 15, end_ms=t0 + (i % 20) * 15 + 1500)
        for i in range(1000)])
    racers = [roles.spawn("scheduler", scheduler__shards=[0, 1, 2, 3]) for _ in range(2)]
    await eventually(lambda: _all_fired(engine), "every slot to fire", timeout_s=60)
    assert all(r.alive() for r in racers), "both raced to the end"
    fires = await invariants.fires_from_queues(engine, QUEUES)
    await _assert_exactly_expected(engine, fires, jobs)
    assert len(fires) > 3000, "most jobs existed before their first slot"
    for r in racers:
        await _stop(r)
    await invariants.check(engine, QUEUES, list(jobs), settled=False)


async def test_scheduler_processes_sigkilled_at_random_points_lose_and_double_no_slot(
        make_engine: Callable[..., Any], roles: Roles) -> None:
    """Leased shards (0.6 s lease). A busy scheduler — 400 jobs with phases spread over
    their 200 ms period, so some job is due every half millisecond — is SIGKILLed at a
    random moment while it is firing, four times over; each successor takes the shards
    over when the dead one's leases expire and catches up the missed slots (within the
    jobs' grace). At the end every slot fired exactly once."""
    rng = random.Random(4242)
    engine = await make_engine()
    t0 = await engine.clock().now_ms() + 1000
    jobs = await _schedule(engine, [
        Every(every_ms=200, start_ms=t0 + i // 2, end_ms=t0 + i // 2 + 6000)
        for i in range(400)])
    killed = 0
    for _ in range(4):
        before = await _queued(engine)
        victim = roles.spawn("scheduler", scheduler__lease_s=0.6, scheduler__max_sleep_s=0.2)

        async def firing(before: int = before) -> bool:
            return await _queued(engine) > before or await _all_fired(engine)

        await eventually(firing, f"{victim.name} to take leases and fire")
        if await _all_fired(engine):
            break
        await asyncio.sleep(rng.uniform(0.0, 0.4))
        victim.signal(signal.SIGKILL)
        assert await victim.wait_exit() == -signal.SIGKILL
        killed += 1
    assert killed == 4, "every victim died while slots were still due"
    survivor = roles.spawn("scheduler", scheduler__lease_s=0.6, scheduler__max_sleep_s=0.2)
    await eventually(lambda: _all_fired(engine), "the survivor to fire every slot",
                     timeout_s=60)
    fires = await invariants.fires_from_queues(engine, QUEUES)
    await _assert_exactly_expected(engine, fires, jobs)
    assert len(fires) > 400 * 25, "most jobs existed before their first slot"
    await _stop(survivor)
    await invariants.check(engine, QUEUES, list(jobs), settled=False)
