"""Fixtures for task-kind tests: a loopback HTTP target and a system on a FakeClock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from rsched.client import Client
from rsched.clock import FakeClock
from rsched.models import Run, RunStatus
from rsched.roles.scheduler import Scheduler
from rsched.roles.worker import Worker
from rsched.tasks import TaskRegistry
from tests.support import http_target, system


@pytest.fixture
def target() -> Iterator[http_target.Target]:
    yield from http_target.serve()


@dataclass
class System:
    client: Client
    scheduler: Scheduler
    worker: Worker
    clock: FakeClock

    async def step(self) -> int:
        """Fire what is due, run it to the end, record the outcomes; runs fired."""
        fired = await system.fire_until_idle(self.scheduler)
        await self.worker.tick(block_ms=None)
        await self.worker.drain()
        return fired

    async def last_run(self, job_id: str) -> Run:
        runs = await self.client.runs(job_id, limit=1)
        assert runs, f"job {job_id} has no run"
        return runs[0]

    async def wait_status(self, run_id: str, status: RunStatus, within_s: float) -> float:
        """Seconds until the run has ``status``; fails past ``within_s``."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < within_s:
            run = await self.client.run(run_id)
            if run is not None and run.status is status:
                return time.monotonic() - t0
            await asyncio.sleep(0.01)
        run = await self.client.run(run_id)
        raise AssertionError(f"run {run_id} is {run and run.status}, not {status}, "
                             f"after {within_s}s")


@pytest.fixture
async def make_system(make_engine: Any, clock: FakeClock
                      ) -> AsyncIterator[Callable[..., Any]]:
    """A client, a scheduler and a worker (settings as keyword arguments) on one prefix."""
    workers: list[Worker] = []

    async def make(registry: TaskRegistry | None = None, **worker_cfg: Any) -> System:
        engine = await make_engine(shards=2)
        reg = registry or TaskRegistry()
        w = system.worker(engine, clock, reg, **worker_cfg)
        workers.append(w)
        await w.start()
        return System(system.client(engine, clock, reg), system.scheduler(engine, clock), w,
                      clock)

    yield make
    for w in workers:  # tick()/drain() tests never reach the run loop's shutdown
        await w._caller.kinds.aclose()


@pytest.fixture
async def run_loop() -> AsyncIterator[Callable[[Worker], None]]:
    """Start a worker's run loop (it listens for cancel signals); stopped at teardown."""
    loops: list[tuple[Worker, asyncio.Task[None]]] = []

    def start(w: Worker) -> None:
        loops.append((w, asyncio.create_task(w.run())))

    yield start
    for w, task in loops:
        await w.stop(0.5)
        await asyncio.wait_for(task, 10)
