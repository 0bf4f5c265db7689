"""Time sources. Production time is Redis TIME (engine/connection.py's RedisClock, from
``Engine.clock()``), so host clock skew cannot fire early.

Owns: the Clock protocol, SyncedClock, FakeClock. Must not: read Redis itself, or cache
time across ticks for firing decisions (schedulers read Redis TIME once per tick).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    async def now_ms(self) -> int: ...


class SyncedClock:
    """Redis time without a round trip per call: reads ``source`` (Redis TIME) at most
    every ``resync_s`` and extrapolates with the host's monotonic clock in between, never
    going backwards. Workers use it for timestamps (a run's start and end, a retry's due
    time) and to start runs fired ahead at their slot: it runs behind Redis by the
    reply's way back plus drift over resync_s, never ahead of it by more than that drift;
    the scheduler's firing decisions read RedisClock once per tick."""

    def __init__(self, source: Clock, resync_s: float = 1.0) -> None:
        self._source = source
        self._resync_s = resync_s
        self._base_ms = 0.0
        self._base_at = -1e18  # monotonic seconds when _base_ms was read
        self._last = 0
        # to the microsecond where the source can (a whole-ms reading is up to 1 ms behind,
        # and workers start runs held for their slot by this clock)
        self._read = getattr(source, "now_exact_ms", source.now_ms)

    async def now_ms(self) -> int:
        t = time.monotonic()
        if t - self._base_at >= self._resync_s:
            self._base_ms = await self._read()
            # as if read on arrival: behind by the way back, never ahead (a first read
            # that also connected would put a mid-trip guess milliseconds ahead, and runs
            # held for their slot must not start before it)
            self._base_at = t = time.monotonic()
        self._last = max(self._last, int(self._base_ms + (t - self._base_at) * 1000))
        return self._last


async def sleep_until(clock: Clock, at_ms: int) -> int:
    """Sleep until ``clock`` reads ``at_ms`` (or later); returns the time it read."""
    while (now := await clock.now_ms()) < at_ms:
        await asyncio.sleep((at_ms - now) / 1000)
    return now


class FakeClock:
    """A clock tests advance by hand instead of sleeping."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.ms = start_ms

    async def now_ms(self) -> int:
        return self.ms

    def advance(self, ms: int) -> None:
        self.ms += ms
