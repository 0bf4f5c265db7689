"""`rsched notifier` as a role of its own: workers run none by default (notify.enabled is
off), and a notifier process sends the alerts of runs that any worker ended."""

from __future__ import annotations

import contextlib
import json
import signal
from pathlib import Path
from typing import Any

from redis.exceptions import ResponseError

from rsched.client import Client
from rsched.models import Immediate, JobDef, RetryPolicy, RunStatus
from rsched.settings import Settings
from rsched.tasks import TaskRegistry
from tests.integration.notify.conftest import finished, running, wait_runs
from tests.support.procs import Roles, eventually
from tests.support.receiver import Receiver


async def test_a_notifier_process_alerts_on_runs_a_worker_ended(
        make_engine: Any, registry: TaskRegistry, receiver: Receiver, redis_url: str,
        prefix: str, tmp_path: Path) -> None:
    assert Settings().notify.enabled is False, "workers run no notifier unless asked"
    engine = await make_engine(shards=4)
    roles = Roles(redis_url, prefix, 4, tmp_path)
    try:
        n = roles.spawn("notifier", alerts__webhook_url=receiver.url + "/alerts")

        async def reading() -> bool:  # its group starts at the newest event: wait for it
            events = engine.core.shard_keys[3].events
            with contextlib.suppress(ResponseError):
                groups = await engine.core.redis.xinfo_groups(events)
                return any(g["name"] in (b"notifiers", "notifiers") for g in groups)
            return False

        await eventually(reading, "the notifier's consumer group", 30)
        client = Client(engine, engine.clock(), registry)
        job_id = await client.schedule(JobDef(task="boom", schedule=Immediate(),
                                              retry=RetryPolicy(max_attempts=1)))
        async with running(engine, registry, []):  # a worker with no notifier of its own
            runs = await wait_runs(engine, job_id, lambda rs: bool(finished(rs)))
            await receiver.wait_for(1, "/alerts", timeout=20)
        assert [r.status for r in runs] == [RunStatus.DEAD]
        [body] = receiver.bodies("/alerts")
        assert json.loads(body)["job_id"] == job_id
        n.signal(signal.SIGTERM)
        assert await n.wait_exit() == 0, n.log()
    finally:
        roles.close()
