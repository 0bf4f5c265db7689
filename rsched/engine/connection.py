"""Connections to Redis and the clock read from it.

Owns: building the client (pool sizes and timeouts from RedisSettings, the hiredis fast
path when usable), RedisClock (Redis TIME) and REDIS_DOWN (the errors of an unreachable
Redis). Must not: format keys or run scripts.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from rsched.engine.fastredis import FastRedis
from rsched.settings import RedisSettings

# What a call raises when Redis is unreachable (down, restarting, a cut connection): the
# roles wait and retry on these, anything else is a bug or bad input.
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


def connect_redis(cfg: RedisSettings) -> Any:
    # A blocking pool makes a burst of concurrent calls (e.g. many failing runs) wait for
    # a connection instead of failing with "Too many connections".
    pool = aioredis.BlockingConnectionPool.from_url(
        cfg.url, max_connections=cfg.max_connections, timeout=cfg.socket_timeout_s,
        socket_timeout=cfg.socket_timeout_s, socket_connect_timeout=cfg.connect_timeout_s,
        health_check_interval=30)
    redis = aioredis.Redis.from_pool(pool)  # the client owns (and closes) the pool
    if cfg.fast_client and FastRedis.usable(redis):
        return FastRedis(redis)  # hot-path commands without redis-py's per-call layers
    return redis


class RedisClock:
    """Reads Redis TIME; callers read it once per tick. Production time comes from here,
    so host clock skew cannot fire early."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis

    async def now_ms(self) -> int:
        return int(await self.now_exact_ms())

    async def now_exact_ms(self) -> float:
        """Redis TIME to the microsecond (SyncedClock extrapolates from it)."""
        sec, usec = await self._redis.time()
        return int(sec) * 1000 + int(usec) / 1000
