"""Runs of limited queues fired ahead of their slot (the scheduler's lookahead), held
until it comes (other runs fired ahead are started at once as of their slot: a queue-wide
slot or rate token must be taken when the run really starts).

Owns: waiting for each run's not-before time on the worker's clock (Redis time, never
ahead of it: clock.SyncedClock) and handing the runs of one instant to the worker's start
together, so they share one start_runs round trip. Must not: start, extend or record
runs itself (the worker does). A held run is in the worker's ``inflight`` (it counts
against concurrency) but not started: it is still queued in Redis, so it is not extended
(its read lease outlasts any lookahead) and a cancel ends it in Redis at once
(cancel_run.lua), after which start_runs refuses it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from rsched.clock import Clock, sleep_until
from rsched.engine import REDIS_DOWN, Delivery

log = logging.getLogger(__name__)
InFlight = dict[str, tuple[Delivery, "asyncio.Task[Any]"]]


class HeldRuns:
    def __init__(self, clock: Clock, inflight: InFlight,
                 start: Callable[[list[Delivery], int], Awaitable[int]],
                 not_started: Callable[[Delivery], None], ended: Callable[[], None]) -> None:
        self._clock = clock
        self._inflight = inflight
        self._start = start  # the worker's start of due runs (limits, start_runs, spawn)
        self._not_started = not_started  # a held run that will not start here
        self._ended = ended  # a hold is over: room may have come free
        self._ids: set[str] = set()

    def __contains__(self, run_id: str) -> bool:
        return run_id in self._ids

    def hold(self, runs: list[Delivery]) -> None:
        by_time: dict[int, list[Delivery]] = {}
        for d in runs:
            by_time.setdefault(d.not_before_ms, []).append(d)
        for at_ms, group in by_time.items():
            task = asyncio.create_task(self._start_at(at_ms, group))
            for d in group:
                self._inflight[d.run_id] = (d, task)
                self._ids.add(d.run_id)

    async def _start_at(self, at_ms: int, runs: list[Delivery]) -> None:
        try:
            now = await sleep_until(self._clock, at_ms)
            self._release(runs)
            await self._start(runs, now)
        except REDIS_DOWN as exc:  # still pending: the reclaimer starts them later
            log.warning("cannot start %d run(s) held for their slot (%s); left for the "
                        "reclaimer", len(runs), exc)
            for d in runs:
                self._not_started(d)
        finally:
            for d in self._release(runs):  # cancelled while held (lease lost, shutdown)
                self._not_started(d)
            self._ended()

    def _release(self, runs: list[Delivery]) -> list[Delivery]:
        """Take runs out of the hold (and of inflight: a start puts them back)."""
        out = []
        for d in runs:
            if d.run_id in self._ids:
                self._ids.discard(d.run_id)
                if self._inflight.get(d.run_id, (None,))[0] is d:
                    del self._inflight[d.run_id]
                out.append(d)
        return out
