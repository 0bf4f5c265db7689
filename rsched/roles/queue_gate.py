"""A worker's view of its queues' priorities and queue-wide limits.

Owns: which lanes (a queue's stream and its priority lanes) the worker reads and how much
of each read's room each priority level gets; taking queue slots and rate-limit starts
before runs start, deferring the runs refused, renewing held slots with the run leases
and giving them back after outcomes; the cached queue settings (refreshed every
``worker.queue_config_s``). Must not: run tasks, record outcomes or format keys.

The rule (docs/tasks.md, "Priorities"): the lanes of a worker's queues are grouped by
level (a job's priority 0-9; a job without one has its queue's default level). When more
than one level is present, each read splits the room over the levels present in
proportion to level + 1, at least one run per lane stream for every level, so higher
levels start first and no level starves: a run at depth k of its lane starts within k
reads. A queue without limits and a worker whose lanes share one level cost nothing
extra per run: one read of every lane, as before.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence

from rsched.clock import Clock
from rsched.engine import Delivery, Engine
from rsched.engine.queue_limits import QueueConfig, holder
from rsched.errors import Code
from rsched.models import QueueLimits
from rsched.names import lane, split_lane
from rsched.roles.run_leases import RunKey, key

log = logging.getLogger(__name__)
_NONE = QueueConfig(QueueLimits(), frozenset())


class QueueGate:
    def __init__(self, engine: Engine, consumer: str, queues: Sequence[str], *,
                 refresh_s: float, lease_s: float, retry_s: float) -> None:
        self.engine = engine
        self.consumer = consumer
        self.queues = list(queues)
        self.refresh_s = refresh_s
        self.lease_ms = int(lease_s * 2000)  # a slot outlives a missed renewal or two
        self.retry_ms = int(retry_s * 1000)
        self.lanes: list[str] = list(queues)
        self._levels: list[tuple[int, list[str]]] = [(0, list(queues))]  # high first
        self._configs: dict[str, QueueConfig] = {}
        self._fetched = -math.inf
        self.held: dict[RunKey, str] = {}  # runs holding a queue slot -> their queue
        self._limited = False  # whether any of the queues has a limit

    # -- settings -------------------------------------------------------------------
    def config(self, lane_name: str) -> QueueConfig:
        return self._configs.get(split_lane(lane_name)[0], _NONE)

    def limited(self, lane_name: str) -> bool:
        """Whether runs of this lane take a slot or token of a queue-wide limit."""
        return self._limited and self.config(lane_name).limited

    async def refresh(self) -> None:
        if time.monotonic() - self._fetched < self.refresh_s:
            return
        self._configs = await self.engine.limits.queue_configs(self.queues)
        self._fetched = time.monotonic()
        self._limited = any(cfg.limited for cfg in self._configs.values())
        by_level: dict[int, list[str]] = {}
        for q in self.queues:
            cfg = self._configs[q]
            by_level.setdefault(cfg.limits.priority, []).append(q)
            for p in sorted(cfg.levels):
                by_level.setdefault(p, []).append(lane(q, p))
        lanes = [name for names in by_level.values() for name in names]
        new = [name for name in lanes if name not in self.lanes]
        if new:
            await self.engine.runs.ensure_groups(new)
        self.lanes = sorted(set(self.lanes) | set(lanes))
        self._levels = sorted(by_level.items(), reverse=True)

    # -- reading ----------------------------------------------------------------------
    def _per_stream(self, n: int, lanes: int) -> int:
        return max(1, -(-n // (lanes * self.engine.shards)))  # COUNT applies per stream

    @staticmethod
    def shares(room: int, levels: Sequence[tuple[int, list[str]]]
               ) -> list[tuple[list[str], int]]:
        """(lanes, runs to read) per level, high first: the priority rule."""
        total = sum(level + 1 for level, _ in levels)
        return [(lanes, max(1, room * (level + 1) // total)) for level, lanes in levels]

    async def read(self, room: int, block_ms: int | None) -> list[Delivery]:
        """One batch for ``room`` runs: every lane at once when all share a level, else
        one non-blocking read a level (pipelined) and a blocking read of all when idle."""
        await self.refresh()
        if len(self._levels) > 1:
            runs = await self._read_levels(room, self._levels)
            if runs or block_ms is None:
                return runs
        return await self.engine.runs.read_runs(
            self.consumer, self.lanes, self._per_stream(room, len(self.lanes)), block_ms)

    async def _read_levels(self, room: int, levels: list[tuple[int, list[str]]],
                           again: bool = True) -> list[Delivery]:
        """Each level its share (pipelined); room the empty ones left goes, once more
        by the same weights, to the levels that filled their share (work-conserving)."""
        shares = self.shares(room, levels)
        got = await asyncio.gather(*(self.engine.runs.read_runs(
            self.consumer, lanes, self._per_stream(n, len(lanes)), None)
            for lanes, n in shares))
        runs = [d for batch in got for d in batch]
        full = [lv for lv, (_, n), batch in zip(levels, shares, got, strict=True)
                if len(batch) >= n]
        if again and full and len(runs) < room:
            runs += await self._read_levels(room - len(runs), full, again=False)
        return runs

    # -- limits -----------------------------------------------------------------------
    async def admit(self, now_ms: int, runs: list[Delivery],
                    drop: Callable[[RunKey], None]) -> list[Delivery]:
        """The runs that may start: those of unlimited queues, and those that took a
        slot of their queue's limits; the others are deferred (``drop``: their leases)."""
        limited = [d for d in runs if self.config(d.queue).limited] if self._limited else []
        if not limited:
            return runs
        by_queue: dict[str, list[Delivery]] = {}
        for d in limited:
            by_queue.setdefault(split_lane(d.queue)[0], []).append(d)
        replies = await self.engine.limits.take_queue_slots(
            now_ms, self.lease_ms, {q: [holder(d) for d in ds] for q, ds in by_queue.items()})
        refused: dict[str, list[tuple[Delivery, int]]] = {"queue_limit": [], "rate_limit": []}
        for q, ds in by_queue.items():
            reply, rated = replies[q], 0
            for d, code in zip(ds, reply.codes, strict=True):
                if code == Code.OK:
                    self.held[key(d)] = q
                elif code == Code.RATE_LIMITED:  # spaced so each comes back for its start
                    at = now_ms + reply.wait_ms + int(rated * reply.interval_ms)
                    refused["rate_limit"].append((d, at))
                    rated += 1
                else:
                    refused["queue_limit"].append((d, now_ms + self.retry_ms))
        await self._defer(now_ms, refused, drop)
        return [d for d in runs if key(d) in self.held or not self.config(d.queue).limited]

    async def _defer(self, now_ms: int, refused: dict[str, list[tuple[Delivery, int]]],
                     drop: Callable[[RunKey], None]) -> None:
        for why, items in refused.items():
            if not items:
                continue
            codes = await self.engine.limits.defer_runs(now_ms, why, items)
            for (d, _), code in zip(items, codes, strict=True):
                drop(key(d))
                if code == Code.NOT_FOUND:
                    await self.engine.runs.ack_entry(d)

    async def release(self, keys: Iterable[RunKey]) -> None:
        """Give back the slots of these runs (after their outcome is recorded, or when
        they did not start after all)."""
        if not self.held:
            return
        by_queue: dict[str, list[str]] = {}
        for k in keys:
            q = self.held.pop(k, None)
            if q is not None:
                by_queue.setdefault(q, []).append(f"{k[0]}/{k[1]}")
        if by_queue:
            await self.engine.limits.release_queue_slots(by_queue)

    async def renew(self, clock: Clock, alive: Iterable[RunKey]) -> None:
        """Extend the slots of ``alive`` runs (in flight, or their outcome not recorded
        yet) with their run leases; forget the slots of runs this worker lost (their
        holder expires, or a reclaim hands it on)."""
        if not self.held:
            return
        alive = set(alive)
        for k in [k for k in self.held if k not in alive]:
            del self.held[k]
        by_queue: dict[str, list[str]] = {}
        for k, q in self.held.items():
            by_queue.setdefault(q, []).append(f"{k[0]}/{k[1]}")
        await self.engine.limits.renew_queue_slots(await clock.now_ms() + self.lease_ms,
                                                   by_queue)

    async def hand_over(self, now_ms: int, runs: Sequence[Delivery]) -> None:
        """Reclaimed runs of limited queues hold their slot under their new attempt."""
        await self.refresh()
        new: dict[str, list[str]] = {}
        old: dict[str, list[str]] = {}
        for d in runs:
            if self.config(d.queue).limited:
                q = split_lane(d.queue)[0]
                self.held[key(d)] = q
                new.setdefault(q, []).append(holder(d))
                old.setdefault(q, []).append(f"{d.run_id}/{d.attempt - 1}")
        if new:
            await self.engine.limits.renew_queue_slots(now_ms + self.lease_ms, new, old)
