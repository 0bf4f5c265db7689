"""Recording a worker's outcomes: successes batched into one complete_runs round trip,
failures one fail_run each (retry with backoff, or dead-letter), all fenced by attempt.

Owns: the buffer of finished runs, the flusher loop, the retry schedule (backoff with
jitter), releasing queue-wide slots once an outcome is recorded. Must not: run tasks or
read runs (worker.py does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Iterator

from rsched import metrics
from rsched.clock import Clock
from rsched.engine import REDIS_DOWN, Delivery, Engine, Outcome
from rsched.errors import Code
from rsched.models import JobSpec, RetryPolicy, RunStatus
from rsched.roles.queue_gate import QueueGate
from rsched.roles.run_leases import RunKey, key

log = logging.getLogger("rsched.roles.worker")
FAIL_RECORD_TRIES = 30  # about a minute of backoff before leaving a failure to the reclaimer


def backoff_ms(policy: RetryPolicy, attempt: int, rng: random.Random) -> int:
    """Exponential backoff with a cap and +-jitter for the retry after ``attempt``."""
    base = min(policy.backoff_max_s, policy.backoff_s * policy.backoff_factor ** (attempt - 1))
    spread = base * policy.jitter
    return int(max(0.0, base + rng.uniform(-spread, spread)) * 1000)


class Outcomes:
    def __init__(self, engine: Engine, clock: Clock, gate: QueueGate, ttl_ms: int) -> None:
        self.engine = engine
        self.clock = clock
        self._gate = gate
        self._ttl_ms = ttl_ms
        self._pending: dict[int, list[Outcome]] = {}
        self._flush_now = asyncio.Event()
        self._rng = random.Random()

    def pending(self) -> Iterator[RunKey]:
        """Runs finished but not recorded yet (their queue slots stay leased)."""
        return ((o.run_id, o.attempt) for os in self._pending.values() for o in os)

    def record(self, d: Delivery, status: RunStatus, result: str) -> None:
        self._pending.setdefault(d.shard, []).append(Outcome(d.run_id, d.attempt, status, result))
        metrics.run_ended(status.value)
        self._flush_now.set()

    async def fail(self, d: Delivery, spec: JobSpec | None, error: str, final: RunStatus,
                    *, retry: bool, delay_ms: int | None = None) -> None:
        # The run stays in flight (its lease extended) while Redis is unreachable; resending
        # is safe because fail_run is fenced by the attempt.
        pause = 0.1
        for _ in range(FAIL_RECORD_TRIES):
            try:
                now = await self.clock.now_ms()
                retry_at = None
                if retry and spec is not None:
                    retry_at = now + (delay_ms if delay_ms is not None
                                      else backoff_ms(spec.retry, d.attempt, self._rng))
                code = await self.engine.runs.fail_run(d.shard, now, self._ttl_ms, d.run_id,
                                                  d.attempt, error, retry_at, final)
                with contextlib.suppress(*REDIS_DOWN):  # else its lease ends it
                    await self._gate.release([key(d)])
                break
            except REDIS_DOWN as exc:
                log.warning("cannot record failure of %s yet (%s)", d.run_id, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
        else:
            log.warning("gave up recording failure of %s; it will be reclaimed", d.run_id)
            return
        metrics.run_ended("retrying" if code == Code.RETRYING else final.value)
        log.warning("run %s attempt %d failed (%s): %s", d.run_id, d.attempt,
                    "retrying" if code == Code.RETRYING else "ended" if code == Code.ENDED
                    else f"fenced {code}",
                    error)

    async def flush(self) -> None:
        """Record buffered outcomes in one pipelined round trip."""
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        try:
            now = await self.clock.now_ms()
            codes = await self.engine.runs.complete_runs(now, self._ttl_ms, batch)
        except (*REDIS_DOWN, asyncio.CancelledError):
            # Keep the outcomes for the next flush rather than letting the runs be reclaimed
            # and executed again: completion is fenced by attempt, so resending a batch that
            # did land before the connection broke (or the flusher was cancelled at
            # shutdown) only acks it again (code -2).
            for shard, outs in batch.items():
                self._pending[shard] = outs + self._pending.get(shard, [])
            raise
        with contextlib.suppress(*REDIS_DOWN):  # else their leases end them
            await self._gate.release((o.run_id, o.attempt) for os in batch.values() for o in os)
        rejected = sum(1 for c in codes if c != Code.OK)
        if rejected:
            log.warning("%d outcome(s) rejected: attempt superseded or run already ended",
                        rejected)

    async def flusher(self) -> None:
        while True:
            await self._flush_now.wait()
            self._flush_now.clear()
            try:
                await self.flush()
            except REDIS_DOWN as exc:
                log.warning("cannot record outcomes (%s); retrying", exc)
                await asyncio.sleep(0.5)
                self._flush_now.set()

