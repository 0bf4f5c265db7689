"""Build schedulers, workers and clients on one engine prefix for tests."""

from __future__ import annotations

from typing import Any

import msgspec

from rsched.client import Client
from rsched.clock import FakeClock
from rsched.engine import Engine
from rsched.roles.scheduler import Scheduler
from rsched.roles.worker import Worker
from rsched.settings import SchedulerSettings, WorkerSettings
from rsched.tasks import TaskRegistry


def scheduler(engine: Engine, clock: FakeClock, **cfg: Any) -> Scheduler:
    cfg.setdefault("shards", list(range(engine.shards)))
    # FakeClock tests step time by hand and expect a slot fired once due; tests of the
    # lookahead set it (tests/integration/test_lookahead.py)
    cfg.setdefault("lookahead_ms", 0)
    return Scheduler(engine, SchedulerSettings(**cfg), clock)


def worker(engine: Engine, clock: Any, registry: TaskRegistry, **cfg: Any) -> Worker:
    base = WorkerSettings(queues=["default"], lease_s=30.0, heartbeat_s=5.0)
    return Worker(engine, msgspec.structs.replace(base, **cfg), clock, registry)


def client(engine: Engine, clock: Any, registry: TaskRegistry | None = None) -> Client:
    return Client(engine, clock, registry)


async def fire_until_idle(s: Scheduler) -> int:
    """Tick until nothing is due at the current time (a recurring job's next slot may still
    be due after a tick, the way the run loop ticks again at once); returns runs fired."""
    fired = 0
    while True:
        report = await s.tick()
        fired += report.fired
        if report.next_due_ms is None or report.next_due_ms > report.now_ms:
            return fired
