"""A worker's connection to Redis dropped (through an in-test TCP proxy) while it works.

A dropped connection is not a crash: nothing may be lost, and nothing that already ran
may run again because the worker could not report it in time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import pytest
import redis.asyncio as aioredis

from rsched.clock import FakeClock
from rsched.engine import Engine
from rsched.models import JobDef, RunStatus
from rsched.settings import RedisSettings
from rsched.tasks import TaskRegistry
from tests.support import invariants, system
from tests.support.procs import eventually, sync_check
from tests.support.proxy import Proxy

pytestmark = pytest.mark.chaos

QUEUES = ["default"]


async def test_outcome_of_a_run_finished_while_cut_off_is_recorded_once_back(
        make_engine: Callable[..., Any], redis_url: str, prefix: str, clock: FakeClock,
        caplog: pytest.LogCaptureFixture) -> None:
    url = urlparse(redis_url)
    proxy = await Proxy(url.hostname or "127.0.0.1", url.port or 6379).start()
    worker_redis = aioredis.Redis.from_url(proxy.url)
    engine = await make_engine()  # direct: the test's client and scheduler
    wengine = Engine(worker_redis, RedisSettings(prefix=prefix, shards=engine.shards))
    await wengine.start()
    reg = TaskRegistry()
    started, release = asyncio.Event(), asyncio.Event()
    calls: list[int] = []

    @reg.task(name="gate")
    async def gate() -> None:
        calls.append(1)
        started.set()
        await release.wait()

    w = system.worker(wengine, clock, reg, block_s=0.05)
    loop = asyncio.create_task(w.run())
    try:
        job = await system.client(engine, clock, reg).schedule(JobDef(task="gate"))
        assert (await system.scheduler(engine, clock).tick()).fired == 1
        await asyncio.wait_for(started.wait(), 10)

        await proxy.cut()
        release.set()  # the run finishes while the worker cannot reach Redis
        await eventually(sync_check(lambda: "cannot record outcomes" in caplog.text),
                         "the worker to fail recording the outcome")
        await proxy.restore()

        async def succeeded() -> bool:
            run = await engine.get_run(f"{job}:1")
            return run is not None and run.status is RunStatus.SUCCEEDED

        await eventually(succeeded, "the kept outcome to be recorded once Redis is reachable",
                         timeout_s=15)
        run = await engine.get_run(f"{job}:1")
        assert run is not None and (run.attempt, run.worker) == (1, w.id)
        assert calls == [1], "executed once: no reclaim, no second attempt"
        await w.stop(1.0)
        await asyncio.wait_for(loop, 10)
        await invariants.check(engine, QUEUES, [job], settled=True)
    finally:
        if not loop.done():
            await w.stop(0.0)
            await asyncio.wait_for(loop, 10)
        await worker_redis.aclose()
        await proxy.close()


async def test_failure_of_a_run_finished_while_cut_off_is_recorded_once_back(
        make_engine: Callable[..., Any], redis_url: str, prefix: str, clock: FakeClock,
        caplog: pytest.LogCaptureFixture) -> None:
    url = urlparse(redis_url)
    proxy = await Proxy(url.hostname or "127.0.0.1", url.port or 6379).start()
    worker_redis = aioredis.Redis.from_url(proxy.url)
    engine = await make_engine()
    wengine = Engine(worker_redis, RedisSettings(prefix=prefix, shards=engine.shards))
    await wengine.start()
    reg = TaskRegistry()
    started, release = asyncio.Event(), asyncio.Event()
    calls: list[int] = []

    @reg.task(name="gate_fail")
    async def gate_fail() -> None:
        calls.append(1)
        started.set()
        await release.wait()
        raise RuntimeError("failed while cut off")

    w = system.worker(wengine, clock, reg, block_s=0.05)
    loop = asyncio.create_task(w.run())
    try:
        job = await system.client(engine, clock, reg).schedule(JobDef(task="gate_fail"))
        assert (await system.scheduler(engine, clock).tick()).fired == 1
        await asyncio.wait_for(started.wait(), 10)
        await proxy.cut()
        release.set()
        await eventually(sync_check(lambda: "cannot record failure" in caplog.text),
                         "the worker to fail recording the failure")
        await proxy.restore()

        async def retrying() -> bool:
            run = await engine.get_run(f"{job}:1")
            return run is not None and run.status is RunStatus.RETRYING

        await eventually(retrying, "the kept failure to be recorded", timeout_s=15)
        run = await engine.get_run(f"{job}:1")
        assert run is not None and run.attempt == 2 and run.error == (
            "RuntimeError: failed while cut off")
        assert calls == [1], "not reclaimed and re-run while the failure waited"
    finally:
        await w.stop(0.0)
        await asyncio.wait_for(loop, 10)
        await worker_redis.aclose()
        await proxy.close()
