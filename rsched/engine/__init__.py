"""The engine: the only owner of Redis.

Nothing outside this package holds a Redis connection, formats a key or runs a script.
``Engine`` is composed of one part per concern, each holding the shared ``Core``:

- ``engine.jobs``     job transitions (schedule_job, cancel_job, pause_job, ...) - jobs.py
- ``engine.firing``   the scheduler's transitions (fire_due, leases, wake) - firing.py
- ``engine.runs``     the workers' transitions (start, complete, fail, reclaim) - runs.py
- ``engine.query``    read-only lookups of jobs, runs, dead letters, counts - queries.py
- ``engine.feed``     events out to the archive, restores back in - archive_feed.py
- ``engine.access``   API keys, rate-limit buckets, idempotent replays - access.py
- ``engine.catalog``  tenants' job index, names, labels, queues, dead letters - catalog.py
- ``engine.notify``   the notifiers' feed of run endings, alert gates - notify.py
- ``engine.limits``   queue-wide limits and priority levels, slots, deferrals - queue_limits.py

Method names match their Lua script (``lua/<name>.lua``) where there is one.
"""

from __future__ import annotations

from rsched.engine.access import Access
from rsched.engine.archive_feed import ArchiveFeed
from rsched.engine.catalog import Catalog
from rsched.engine.connection import REDIS_DOWN, RedisClock, connect_redis
from rsched.engine.core import Core
from rsched.engine.firing import Firing
from rsched.engine.jobs import Jobs
from rsched.engine.keys import ShardKeys
from rsched.engine.notify import Notify
from rsched.engine.queries import Queries
from rsched.engine.queue_limits import QueueLimitsPart
from rsched.engine.runs import Runs
from rsched.engine.types import Delivery, DueItem, Fire, Outcome, job_of_run
from rsched.settings import RedisSettings, Settings

__all__ = ["REDIS_DOWN", "Delivery", "DueItem", "Engine", "Fire", "Outcome", "RedisClock",
           "job_of_run"]


class Engine:
    def __init__(self, redis: object, cfg: RedisSettings, *,
                 events_maxlen: int = 1_000_000) -> None:
        self.core = Core(redis, cfg, events_maxlen=events_maxlen)
        self.jobs = Jobs(self.core)
        self.firing = Firing(self.core)
        self.runs = Runs(self.core)
        self.query = Queries(self.core)
        self.feed = ArchiveFeed(self.core)
        self.access = Access(self.core)
        self.catalog = Catalog(self.core)
        self.notify = Notify(self.core)
        self.limits = QueueLimitsPart(self.core)

    @classmethod
    async def connect(cls, settings: Settings) -> Engine:
        """Connect to the configured Redis, load the scripts, check the shard count."""
        engine = cls(connect_redis(settings.redis), settings.redis,
                     events_maxlen=settings.scheduler.events_maxlen)
        try:
            await engine.start()
        except BaseException:
            await engine.close()
            raise
        return engine

    async def start(self) -> None:
        await self.core.start()

    async def close(self) -> None:
        await self.core.redis.aclose()

    def clock(self) -> RedisClock:
        """Redis TIME: the clock every firing decision reads."""
        return RedisClock(self.core.redis)

    @property
    def shards(self) -> int:
        return self.core.shards

    def keys_for(self, job_id: str) -> ShardKeys:
        return self.core.keys_for(job_id)
