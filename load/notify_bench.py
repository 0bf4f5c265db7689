"""How fast one notifier drains the events streams (no webhooks configured): the rate a
worker's notifier keeps up with. `python load/notify_bench.py` (starts a redis-server)."""

from __future__ import annotations

import asyncio
import time

from rsched.devservers import RedisServer
from rsched.engine import Engine
from rsched.engine.connection import connect_redis
from rsched.roles.notifier import Notifier
from rsched.settings import AlertSettings, NotifySettings, RedisSettings

EVENTS = 100_000


async def lag(e: Engine) -> int:
    total = 0
    for k in e.core.shard_keys:
        for g in await e.core.redis.xinfo_groups(k.events):
            if g["name"] in (b"notifiers", "notifiers"):
                total += int(g.get("lag") or 0) + int(g["pending"])
    return total


async def main() -> None:
    srv = RedisServer().start()
    try:
        cfg = RedisSettings(url=srv.url, prefix="b", shards=16)
        e = Engine(connect_redis(cfg), cfg)
        await e.start()
        await e.notify.ensure_groups()
        pipe = e.core.redis.pipeline(transaction=False)
        for i in range(EVENTS):  # queued, running, succeeded per run, like real runs
            job = f"job{i % 1000}"
            st = ("queued", "running", "succeeded")[i % 3]
            pipe.xadd(e.keys_for(job).events, {"t": 1, "k": "run", "r": f"{job}:{i // 3}",
                                               "j": job, "st": st, "att": 1})
        await pipe.execute()
        n = Notifier(e, NotifySettings(batch=1000), AlertSettings(log=False), "c1",
                     block_s=0.05)
        start = time.perf_counter()
        task = asyncio.create_task(n.run())
        while await lag(e):
            await asyncio.sleep(0.05)
        took = time.perf_counter() - start
        print(f"{EVENTS} events ({EVENTS // 3} run endings): {took:.2f}s ="
              f" {EVENTS / took:,.0f} events/s for one notifier")
        await n.stop(1)
        await task
        await e.close()
    finally:
        srv.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
