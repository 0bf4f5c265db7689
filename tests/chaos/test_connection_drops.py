"""A worker's connection to Redis dropped (through an in-test TCP proxy) while it works.

A dropped connection is not a crash: nothing may be lost, and nothing that already ran
may run again because the worker could not report it in time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
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


class CutOff:
    """A worker whose Redis connection runs through a proxy the test can cut, a gated task
    it is running, and a direct engine for the test's own client and scheduler."""

    def __init__(self, engine: Engine, proxy: Proxy, worker_redis: Any, fail: bool) -> None:
        self.engine, self.proxy, self.worker_redis = engine, proxy, worker_redis
        self.started, self.release = asyncio.Event(), asyncio.Event()
        self.calls: list[int] = []
        self.reg = TaskRegistry()

        @self.reg.task(name="gate")
        async def gate() -> None:
            self.calls.append(1)
            self.started.set()
            await self.release.wait()
            if fail:
                raise RuntimeError("failed while cut off")

    async def run_cut_off(self, clock: FakeClock, wengine: Engine,
                          logged: Callable[[], bool]) -> str:
        """Start the worker, fire one run, cut the connection while it finishes."""
        self.worker = system.worker(wengine, clock, self.reg, block_s=0.05)
        self.loop = asyncio.create_task(self.worker.run())
        job = await system.client(self.engine, clock, self.reg).schedule(JobDef(task="gate"))
        assert (await system.scheduler(self.engine, clock).tick()).fired == 1
        await asyncio.wait_for(self.started.wait(), 10)
        await self.proxy.cut()
        self.release.set()  # the run finishes while the worker cannot reach Redis
        await eventually(sync_check(logged), "the worker to fail recording the result")
        await self.proxy.restore()
        return job

    async def run_state(self, job: str, status: RunStatus) -> bool:
        run = await self.engine.query.get_run(f"{job}:1")
        return run is not None and run.status is status


@pytest.fixture
async def cut_off(make_engine: Callable[..., Any], redis_url: str, prefix: str,
                  clock: FakeClock) -> AsyncIterator[Any]:
    url = urlparse(redis_url)
    proxy = await Proxy(url.hostname or "127.0.0.1", url.port or 6379).start()
    worker_redis = aioredis.Redis.from_url(proxy.url)
    engine = await make_engine()
    wengine = Engine(worker_redis, RedisSettings(prefix=prefix, shards=engine.shards))
    await wengine.start()
    harness: CutOff | None = None

    async def make(fail: bool, logged: Callable[[], bool]) -> tuple[CutOff, str]:
        nonlocal harness
        harness = CutOff(engine, proxy, worker_redis, fail)
        return harness, await harness.run_cut_off(clock, wengine, logged)

    try:
        yield make
    finally:
        if harness is not None and not harness.loop.done():
            await harness.worker.stop(0.0)
            await asyncio.wait_for(harness.loop, 10)
        await worker_redis.aclose()
        await proxy.close()


async def test_outcome_of_a_run_finished_while_cut_off_is_recorded_once_back(
        cut_off: Any, caplog: pytest.LogCaptureFixture) -> None:
    h, job = await cut_off(False, lambda: "cannot record outcomes" in caplog.text)
    await eventually(lambda: h.run_state(job, RunStatus.SUCCEEDED),
                     "the kept outcome to be recorded once Redis is reachable", timeout_s=15)
    run = await h.engine.query.get_run(f"{job}:1")
    assert run is not None and (run.attempt, run.worker) == (1, h.worker.id)
    assert h.calls == [1], "executed once: no reclaim, no second attempt"
    await h.worker.stop(1.0)
    await asyncio.wait_for(h.loop, 10)
    await invariants.check(h.engine, QUEUES, [job], settled=True)


async def test_failure_of_a_run_finished_while_cut_off_is_recorded_once_back(
        cut_off: Any, caplog: pytest.LogCaptureFixture) -> None:
    h, job = await cut_off(True, lambda: "cannot record failure" in caplog.text)
    await eventually(lambda: h.run_state(job, RunStatus.RETRYING),
                     "the kept failure to be recorded", timeout_s=15)
    run = await h.engine.query.get_run(f"{job}:1")
    assert run is not None and run.attempt == 2
    assert (run.error or "").splitlines()[0] == "RuntimeError: failed while cut off"
    assert h.calls == [1], "not reclaimed and re-run while the failure waited"


async def test_a_killed_subscription_is_made_again_and_messages_flow(
        make_engine: Callable[..., Any], redis: Any) -> None:
    """The listeners (scheduler wake-ups, worker cancels) outlive their connection."""
    engine = await make_engine()
    channel = engine.core.global_keys.cancel_channel
    got: asyncio.Queue[str] = asyncio.Queue()

    async def listen() -> None:
        async for run_id in engine.runs.cancel_signals():
            await got.put(run_id)

    async def subscribed() -> bool:
        return dict(await redis.pubsub_numsub(channel))[channel.encode()] == 1

    listener = asyncio.create_task(listen())
    try:
        for i in range(3):
            await eventually(subscribed, "the listener to subscribe")
            await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            await eventually(subscribed, "the listener to subscribe again")
            await redis.publish(channel, f"run-{i}")
            assert await asyncio.wait_for(got.get(), 10) == f"run-{i}"
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
