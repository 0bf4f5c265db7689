"""Redis memory stays bounded under steady load: streams are trimmed, run state expires.

20,000 runs go through fire -> start -> complete on a real redis-server, driven in
batches by a FakeClock (no sleeps). The worker's own maintenance (engine.trim_queues every
tick here) trims acked queue entries; the events streams are capped by their maxlen.
"""

from __future__ import annotations

from typing import Any

from rsched.clock import FakeClock
from rsched.engine import Engine
from rsched.models import Every, JobDef
from rsched.settings import RedisSettings
from rsched.tasks import TaskRegistry
from tests.support import invariants, system

QUEUES = ["default"]
JOBS, SLOTS = 400, 50
EVENTS_MAXLEN = 2000
# XADD MAXLEN ~ trims whole stream nodes (stream-node-max-entries, 100 by default), so a
# capped stream may exceed its maxlen by up to one node.
NODE_SLACK = 100


async def test_streams_stay_trimmed_and_runs_expire_after_20000_completed_runs(
        redis: Any, prefix: str, clock: FakeClock) -> None:
    engine = Engine(redis, RedisSettings(prefix=prefix, shards=4), events_maxlen=EVENTS_MAXLEN)
    await engine.start()
    reg = TaskRegistry()

    @reg.task(name="noop")
    async def noop() -> None:
        return None

    c = system.client(engine, clock, reg)
    s = system.scheduler(engine, clock)
    w = system.worker(engine, clock, reg, concurrency=1000, batch=1000, trim_every_s=0.0,
                      reclaim_every_s=3600.0)
    await w.start()
    jobs = [await c.schedule(JobDef(id=f"m{i:03d}", task="noop",
                                    schedule=Every(every_ms=1000, start_ms=clock.ms)))
            for i in range(JOBS)]
    fired, longest_queue = 0, 0
    for _ in range(SLOTS):
        fired += await system.fire_until_idle(s)
        while (await w.tick(block_ms=None)).started:
            pass
        await w.drain()
        lengths = await engine.query.stream_lengths(QUEUES)
        longest_queue = max([longest_queue, *(n for k, n in lengths.items() if ":q:" in k)])
        clock.advance(1000)
    assert fired == JOBS * SLOTS == 20_000

    await w.tick(block_ms=None)  # its maintenance trims what the last batch acked
    lengths = await engine.query.stream_lengths(QUEUES)
    queues = {k: n for k, n in lengths.items() if ":q:" in k}
    events = {k: n for k, n in lengths.items() if k.endswith(":events")}
    assert len(queues) == len(events) == 4
    assert sum(queues.values()) == 0, f"every entry was acked, so all are trimmed: {queues}"
    assert longest_queue <= JOBS, "a queue stream never held more than one step's runs"
    assert all(n <= EVENTS_MAXLEN + NODE_SLACK for n in events.values()), events
    assert sum(events.values()) < 20_000, "far fewer events kept than were written"

    summary = await invariants.check(engine, QUEUES, jobs, settled=True, events_complete=False)
    assert summary.statuses() == {"succeeded": 20_000}
    assert all(len(summary.slots(j)) == SLOTS for j in jobs)
    # run state is kept only for run_ttl_s: every finished run's hash has an expiry
    pipe = redis.pipeline(transaction=False)
    for rid in summary.runs:
        pipe.pttl(engine.keys_for(rid.rsplit(":", 1)[0]).run(rid))
    ttls = await pipe.execute()
    assert all(0 < t <= w.cfg.run_ttl_s * 1000 for t in ttls)
