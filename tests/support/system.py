"""Build schedulers, workers and clients on one engine prefix for tests."""

from __future__ import annotations

from typing import Any

import msgspec

from rsched.client import Client
from rsched.clock import FakeClock
from rsched.engine import Engine
from rsched.scheduler import Scheduler
from rsched.settings import SchedulerSettings, WorkerSettings
from rsched.tasks import TaskRegistry
from rsched.worker import Worker


def scheduler(engine: Engine, clock: FakeClock, **cfg: Any) -> Scheduler:
    cfg.setdefault("shards", list(range(engine.shards)))
    return Scheduler(engine, SchedulerSettings(**cfg), clock)


def worker(engine: Engine, clock: Any, registry: TaskRegistry, **cfg: Any) -> Worker:
    base = WorkerSettings(queues=["default"], lease_s=30.0, heartbeat_s=5.0)
    return Worker(engine, msgspec.structs.replace(base, **cfg), clock, registry)


def client(engine: Engine, clock: Any, registry: TaskRegistry | None = None) -> Client:
    return Client(engine, clock, registry)
