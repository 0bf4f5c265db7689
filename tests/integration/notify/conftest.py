"""Roles on one engine (scheduler, workers, notifiers) on the Redis clock, and a real
HTTP receiver on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from rsched.engine import Engine
from rsched.errors import Fatal
from rsched.models import TERMINAL, Run
from rsched.roles.notifier import Notifier
from rsched.settings import AlertSettings, NotifySettings
from rsched.tasks import TaskRegistry
from tests.support import system
from tests.support.receiver import Receiver

FAST = NotifySettings(backoff_s=0.05, backoff_max_s=0.2, timeout_s=2.0, claim_idle_s=30.0)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.close()


@pytest.fixture
def registry() -> TaskRegistry:
    reg = TaskRegistry()

    @reg.task(name="ok")
    async def ok() -> dict[str, int]:
        return {"n": 1}

    @reg.task(name="boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @reg.task(name="fatal")
    async def fatal() -> None:
        raise Fatal("no")

    return reg


def notifier(engine: Engine, alerts: AlertSettings | None = None,
             cfg: NotifySettings = FAST, consumer: str = "n1") -> Notifier:
    return Notifier(engine, cfg, alerts or AlertSettings(log=False), consumer, block_s=0.05)


@asynccontextmanager
async def running(engine: Engine, registry: TaskRegistry, notifiers: list[Notifier],
                  *, scheduler: bool = True) -> AsyncIterator[Callable[[], Any]]:
    """Run a scheduler, a worker and the notifiers; yields stop_firing()."""
    clock = engine.clock()
    s = system.scheduler(engine, clock)  # type: ignore[arg-type]
    w = system.worker(engine, clock, registry, block_s=0.05)
    tasks = {"w": asyncio.create_task(w.run())}
    tasks |= {f"n{i}": asyncio.create_task(n.run()) for i, n in enumerate(notifiers)}
    if scheduler:
        tasks["s"] = asyncio.create_task(s.run())

    async def stop_firing() -> None:
        if "s" in tasks:
            await s.stop()
            await tasks.pop("s")

    try:
        yield stop_firing
    finally:
        await stop_firing()
        await w.stop(2.0)
        for n in notifiers:
            await n.stop(2.0)
        await asyncio.gather(*tasks.values())


async def wait_runs(engine: Engine, job_id: str, done: Callable[[list[Run]], bool],
                    timeout: float = 10.0) -> list[Run]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        runs = await engine.query.job_runs(job_id, 1000)
        if done(runs) or loop.time() > deadline:
            return runs
        await asyncio.sleep(0.02)


def finished(runs: list[Run]) -> list[Run]:
    return [r for r in runs if r.status in TERMINAL]
