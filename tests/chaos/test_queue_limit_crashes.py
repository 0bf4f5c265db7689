"""A worker SIGKILLed while its run holds a slot of its queue's concurrency limit: the slot
is not leaked (real `rsched worker` and `rsched scheduler` subprocesses). The killed run
is not run again (one attempt), so nothing hands its slot on: the holder's lease must
expire for the next run to start."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from rsched.client import Client
from rsched.models import At, JobDef, QueueLimits, RetryPolicy, RunStatus
from tests.support.chaos_tasks import marker_lines
from tests.support.procs import Roles, eventually, sync_check, worker_ready

pytestmark = pytest.mark.chaos

LEASE_S = 1.0
FAST = {"worker__lease_s": LEASE_S, "worker__heartbeat_s": 0.3,
        "worker__reclaim_every_s": 0.2, "worker__block_s": 0.1,
        "worker__limit_retry_s": 0.1, "worker__queue_config_s": 0.1,
        "worker__modules": ["tests.support.chaos_tasks"]}
LATER = At(at_ms=4_000_000_000_000)


async def test_a_sigkilled_worker_does_not_leak_its_queue_slot(
        make_engine: Callable[..., Any], roles: Roles, marker_dir: str) -> None:
    engine = await make_engine()
    client = Client(engine, engine.clock())
    await client.set_queue_limits("default", QueueLimits(concurrency=1))
    a = roles.spawn("worker", **FAST)
    await worker_ready(engine, a)
    hung = await client.schedule(JobDef(
        task="chaos.hang_first", schedule=LATER, retry=RetryPolicy(max_attempts=1),
        timeout_s=1200, kwargs={"marker_dir": marker_dir, "first_s": 600}))
    first = await client.run_now(hung)
    await eventually(sync_check(lambda: ("start", a.pid) in marker_lines(marker_dir)),
                     "worker a to start the first run")
    held = engine.core.queue_keys("default").held
    assert await engine.core.redis.zrange(held, 0, -1) == [f"{first}/1".encode()]
    a.signal(signal.SIGKILL)
    await a.wait_exit()
    killed_at = time.monotonic()
    other = await client.schedule(JobDef(task="chaos.noop", schedule=LATER))
    second = await client.run_now(other)  # another job: waits for the queue's one slot
    b = roles.spawn("worker", **FAST)
    await worker_ready(engine, b)
    roles.spawn("scheduler")  # fires the deferred run again

    async def second_done() -> bool:
        run = await client.run(second)
        return run is not None and run.status is RunStatus.SUCCEEDED

    await eventually(second_done, "the next run to start and succeed", timeout_s=30)
    assert time.monotonic() - killed_at >= LEASE_S  # it waited for the dead holder's lease
    dead = await client.run(first)
    assert dead is not None and dead.status is RunStatus.DEAD  # reclaimed, not re-run
    assert await engine.core.redis.zcard(held) == 0
