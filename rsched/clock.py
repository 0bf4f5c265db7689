"""Time sources. Production time is Redis TIME (engine/connection.py's RedisClock, from
``Engine.clock()``), so host clock skew cannot fire early.

Owns: the Clock protocol, SyncedClock, FakeClock. Must not: read Redis itself, or cache
time across ticks for firing decisions (schedulers read Redis TIME once per tick).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    async def now_ms(self) -> int: ...


class SyncedClock:
    """Redis time without a round trip per call: reads ``source`` (Redis TIME) at most
    every ``resync_s`` and extrapolates with the host's monotonic clock in between, never
    going backwards. Workers use it for timestamps only (a run's start and end, a
    retry's due time), where the error (under one round trip, plus drift over resync_s)
    is harmless; the scheduler's firing decisions read RedisClock once per tick."""

    def __init__(self, source: Clock, resync_s: float = 1.0) -> None:
        self._source = source
        self._resync_s = resync_s
        self._base_ms = 0
        self._base_at = -1e18  # monotonic seconds when _base_ms was read
        self._last = 0

    async def now_ms(self) -> int:
        t = time.monotonic()
        if t - self._base_at >= self._resync_s:
            self._base_ms = await self._source.now_ms()
            self._base_at = (t + time.monotonic()) / 2  # the reading was taken mid-trip
            t = self._base_at
        self._last = max(self._last, self._base_ms + int((t - self._base_at) * 1000))
        return self._last


class FakeClock:
    """A clock tests advance by hand instead of sleeping."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.ms = start_ms

    async def now_ms(self) -> int:
        return self.ms

    def advance(self, ms: int) -> None:
        self.ms += ms
