"""Bulk creation on a real redis-server: Client.schedule_many sends one schedule_job call
per shard per chunk, and each job in it is still its own outcome (docs/benchmarks.md,
"Job creation, third pass")."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import pytest

from rsched.clock import FakeClock
from rsched.engine.jobs import ITEM_ARGS
from rsched.errors import DuplicateJob
from rsched.models import At, Every, JobDef, JobState
from tests.support import system


def count_script_calls(engine: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records the number of jobs of every schedule_job call queued in a pipeline."""
    sizes: list[int] = []
    queue = engine.core.scripts.queue

    def counting(pipe: Any, name: str, keys: Any, args: Any) -> None:
        if name == "schedule_job":
            sizes.append(len(args["items"]) // ITEM_ARGS)
        queue(pipe, name, keys, args)

    monkeypatch.setattr(engine.core.scripts, "queue", counting)
    return sizes


async def test_schedule_many_creates_every_shards_jobs_in_one_call_per_shard(
        make_engine: Any, clock: FakeClock, redis: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = await make_engine(shards=4)
    c = system.client(engine, clock)
    existing = ["j0007", "j0150"]
    for job_id in existing:  # created earlier, with another schedule
        await c.schedule(JobDef(id=job_id, task="noop", schedule=Every(every_ms=5000)))
    sizes = count_script_calls(engine, monkeypatch)
    jobs = [JobDef(id=f"j{i:04d}", task="noop", schedule=At(at_ms=clock.ms + 1000 + i))
            for i in range(200)]
    with pytest.raises(DuplicateJob, match=r"2 of 200 job ids already exist .*'j0007'"):
        await c.schedule_many(jobs, chunk=120)
    # 2 chunks (120 + 80 jobs), one call per shard each: not one call per job
    per_shard = collections.Counter(engine.keys_for(j.id).shard for j in jobs[:120])
    assert len(sizes) <= 8 and sum(sizes) == 200
    assert sorted(sizes[:len(per_shard)]) == sorted(per_shard.values())
    for i, job in enumerate(jobs):
        assert job.id is not None
        got = await c.get(job.id)
        due = engine.keys_for(job.id).due
        if job.id in existing:  # left as it was
            assert got.version == 1 and isinstance(got.trigger.schedule, Every)
            assert await redis.zscore(due, job.id) == clock.ms
        else:
            assert (got.version, got.state, got.next_ms) == (1, JobState.ACTIVE,
                                                              clock.ms + 1000 + i)
            assert await redis.zscore(due, job.id) == clock.ms + 1000 + i
    listed = await c.list_jobs(limit=1000)
    assert sorted(listed) == sorted(j.id for j in jobs if j.id is not None)


async def test_schedule_many_reports_an_id_repeated_in_one_call_as_existing(
        make_engine: Any, clock: FakeClock) -> None:
    engine = await make_engine(shards=2)
    c = system.client(engine, clock)
    jobs = [JobDef(id="twice", task="noop", schedule=At(at_ms=clock.ms + 10)),
            JobDef(id="twice", task="noop", schedule=At(at_ms=clock.ms + 20))]
    with pytest.raises(DuplicateJob, match="1 of 2"):
        await c.schedule_many(jobs)
    assert (await c.get("twice")).next_ms == clock.ms + 10  # the first one won


async def test_one_wake_per_call_names_the_earliest_new_head(
        make_engine: Any, clock: FakeClock) -> None:
    engine = await make_engine(shards=1)
    c = system.client(engine, clock)
    await c.schedule(JobDef(id="head", task="noop", schedule=At(at_ms=clock.ms + 5000)))
    heard: list[str] = []
    ready = asyncio.Event()

    async def listen() -> None:
        async for msg in engine.core.subscribe(engine.core.global_keys.wake_channel, ready):
            heard.append(msg)

    listener = asyncio.create_task(listen())
    await asyncio.wait_for(ready.wait(), 5)
    later = [JobDef(id=f"l{i}", task="noop", schedule=At(at_ms=clock.ms + 9000 + i))
             for i in range(5)]
    await c.schedule_many(later)  # none earlier than the head: no wake
    earlier = [JobDef(id=f"e{i}", task="noop", schedule=At(at_ms=clock.ms + 3000 - i))
               for i in range(5)]
    await c.schedule_many(earlier)
    for _ in range(200):
        if heard:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)
    assert heard == [f"0 {clock.ms + 2996}"]
