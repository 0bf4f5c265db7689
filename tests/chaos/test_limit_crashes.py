"""A worker SIGKILLed while its run holds a slot of its job's concurrency limit: the slot
is not leaked (real `rsched worker` and `rsched scheduler` subprocesses)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest

from rsched.client import Client
from rsched.models import At, JobDef, RunStatus
from tests.support.chaos_tasks import marker_lines
from tests.support.procs import Roles, eventually, sync_check, worker_ready

pytestmark = pytest.mark.chaos

FAST = {"worker__lease_s": 1.5, "worker__heartbeat_s": 0.3, "worker__reclaim_every_s": 0.2,
        "worker__block_s": 0.1, "worker__limit_retry_s": 0.1,
        "worker__modules": ["tests.support.chaos_tasks"]}


async def test_a_sigkilled_worker_does_not_leak_its_job_slot(
        make_engine: Callable[..., Any], roles: Roles, marker_dir: str) -> None:
    engine = await make_engine()
    clock = engine.clock()
    client = Client(engine, clock)
    a = roles.spawn("worker", **FAST)
    await worker_ready(engine, a)
    job = await client.schedule(JobDef(
        task="chaos.hang_first", schedule=At(at_ms=4_000_000_000_000), concurrency=1,
        timeout_s=1200, kwargs={"marker_dir": marker_dir, "first_s": 600}))
    first = await client.run_now(job)
    await eventually(sync_check(lambda: ("start", a.pid) in marker_lines(marker_dir)),
                     "worker a to start the first run")
    held = engine.keys_for(job).held(job)
    assert await engine.core.redis.zrange(held, 0, -1) == [first.encode()]
    a.signal(signal.SIGKILL)
    await a.wait_exit()
    second = await client.run_now(job)  # waits for the slot the dead worker held
    b = roles.spawn("worker", **FAST)
    await worker_ready(engine, b)
    roles.spawn("scheduler")  # fires the deferred run again

    async def both_done() -> bool:
        runs = [await client.run(r) for r in (first, second)]
        return all(r is not None and r.status is RunStatus.SUCCEEDED for r in runs)

    await eventually(both_done, "both runs to succeed", timeout_s=30)
    reclaimed = await client.run(first)
    assert reclaimed is not None and reclaimed.attempt == 2
    assert await engine.core.redis.zcard(held) == 0
