"""Time sources. Production time is Redis TIME, so host clock skew cannot fire early.

Owns: the Clock protocol, RedisClock, FakeClock. Must not: cache time across ticks.
"""

from __future__ import annotations

from typing import Any, Protocol


class Clock(Protocol):
    async def now_ms(self) -> int: ...


class RedisClock:
    """Reads Redis TIME; callers read it once per tick."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis

    async def now_ms(self) -> int:
        sec, usec = await self._redis.time()
        return int(sec) * 1000 + int(usec) // 1000


class FakeClock:
    """A clock tests advance by hand instead of sleeping."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.ms = start_ms

    async def now_ms(self) -> int:
        return self.ms

    def advance(self, ms: int) -> None:
        self.ms += ms
