"""Redis restarted (SIGKILL, then started again on the same dir and port) with AOF on.

A private redis-server with ``appendonly yes`` and ``appendfsync always``: every reply a
client saw is on disk. Scheduled jobs must survive and fire afterwards, and a scheduler
and a worker process running across the restart must back off and recover by
themselves, with every slot still fired once and every run ending once.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from rsched.client import Client
from rsched.devservers import RedisServer
from rsched.engine import Engine, RedisClock
from rsched.models import TERMINAL, At, Every, JobDef, JobState, RunStatus
from rsched.settings import RedisSettings
from tests.support import invariants
from tests.support.procs import Role, Roles, eventually, worker_ready

pytestmark = pytest.mark.chaos

T = TypeVar("T")
QUEUES = ["default"]
WORKER = {"worker__lease_s": 1.5, "worker__heartbeat_s": 0.3, "worker__reclaim_every_s": 0.2,
          "worker__block_s": 0.1, "worker__modules": ["tests.support.chaos_tasks"]}


@pytest.fixture
async def aof_server() -> AsyncIterator[RedisServer]:
    server = RedisServer(appendonly=True).start()
    try:
        yield server
    finally:
        server.cleanup()


def _tolerant(check: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T | None]]:
    """A poll that treats Redis being down (or just restarted) as "not yet"."""

    async def wrapped() -> T | None:
        try:
            return await check()
        except (RedisConnectionError, RedisTimeoutError, OSError):
            return None

    return wrapped


async def _stop(role: Role) -> None:
    role.signal(signal.SIGTERM)
    assert await role.wait_exit() == 0, role.log()


async def test_jobs_survive_an_aof_redis_restart_and_running_roles_recover(
        aof_server: RedisServer, prefix: str, tmp_path: Path) -> None:
    redis = aioredis.Redis.from_url(aof_server.url)
    roles = Roles(aof_server.url, prefix, 4, tmp_path)
    try:
        await _scenario(aof_server, redis, roles)
    finally:
        roles.close()
        await redis.aclose()


async def _scenario(server: RedisServer, redis: Any, roles: Roles) -> None:
    engine = Engine(redis, RedisSettings(prefix=prefix_of(roles), shards=4))
    await engine.start()
    clock = RedisClock(redis)
    client = Client(engine, clock)
    every = [await client.schedule(JobDef(id=f"e{i:02d}", task="chaos.noop",
                                          schedule=Every(every_ms=300))) for i in range(20)]
    worker = roles.spawn("worker", **WORKER)
    await worker_ready(engine, worker)
    scheduler = roles.spawn("scheduler", scheduler__lease_s=3.0)

    async def each_every_job_ran_twice() -> bool:
        runs = await asyncio.gather(*(client.runs(j, 3) for j in every))
        return all(sum(r.status is RunStatus.SUCCEEDED for r in rs) >= 2 for rs in runs)

    await eventually(each_every_job_ran_twice, "the roles to fire and run every job")

    # One-shot jobs due only after Redis has been down for a while: they can only fire
    # once it is back, from what the AOF restored.
    kill_ms = await clock.now_ms()
    later = [await client.schedule(JobDef(id=f"a{i:02d}", task="chaos.noop",
                                          schedule=At(at_ms=kill_ms + 1500 + 10 * i)))
             for i in range(10)]
    server.stop(kill=True)
    await asyncio.sleep(1.0)  # the outage itself: both roles must notice and back off
    server.start()

    restarted = await eventually(_tolerant(clock.now_ms), "redis to accept commands again")
    for job in every + later:
        j = await client.get(job)
        assert j.state is JobState.ACTIVE, f"{job} survived the restart as {j.state}"

    async def one_shots_ran() -> bool:
        runs = await asyncio.gather(*(client.runs(j, 5) for j in later))
        return all(len(rs) == 1 and rs[0].status is RunStatus.SUCCEEDED for rs in runs)

    await eventually(_tolerant(one_shots_ran), "the one-shot jobs to run after the restart")

    async def every_job_fired_after_restart() -> bool:
        runs = await asyncio.gather(*(client.runs(j, 5) for j in every))
        return all(any(r.slot_ms > restarted and r.status is RunStatus.SUCCEEDED for r in rs)
                   for rs in runs)

    await eventually(_tolerant(every_job_fired_after_restart),
                     "every recurring job to fire and run again after the restart")
    for job in later:
        [run] = await client.runs(job)
        assert run.enqueued_ms is not None and run.enqueued_ms >= run.slot_ms > kill_ms
        assert (await client.get(job)).state is JobState.DONE
    assert "redis unavailable" in scheduler.log(), scheduler.log()
    assert "redis unavailable" in worker.log(), worker.log()

    counts: dict[bytes, int] = {}

    async def resubscribed() -> bool:
        # the scheduler's wake listener and the worker's cancel listener are back
        channels = engine.core.global_keys
        counts.update(await redis.pubsub_numsub(channels.wake_channel, channels.cancel_channel))
        return all(n == 1 for n in counts.values())

    try:
        await eventually(resubscribed, "the scheduler and worker to subscribe again")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; subscribers {counts}\n--- scheduler\n{scheduler.log()}"
                             f"\n--- worker\n{worker.log()}") from None

    await _stop(scheduler)
    jobs = every + later

    async def settled() -> bool:
        summary = await invariants.collect(engine, jobs)
        return all(h["st"] in {s.value for s in TERMINAL} for h in summary.runs.values())

    await eventually(settled, "every fired run to end (runs lost in the outage are reclaimed)")
    await _stop(worker)
    summary = await invariants.check(engine, QUEUES, jobs, settled=True)
    assert set(summary.statuses()) == {"succeeded"}


def prefix_of(roles: Roles) -> str:
    return roles.prefix
