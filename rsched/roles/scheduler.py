"""The scheduler role: moves due slots of the shards it leases into queue streams.

Owns: shard leases and balancing, misfire decisions (via timing.decide), sleeping until
the earliest due score, wake-ups. Must not: run tasks, format keys, or read the host clock
for firing decisions (time is the injected Clock, Redis TIME in production).

Exactly-once per slot comes from fire_due's compare-and-set on the score read, not from
the lease: leases only keep schedulers from doing the same work twice.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from rsched import codec, metrics
from rsched.clock import Clock
from rsched.engine import REDIS_DOWN, DueItem, Engine, Fire
from rsched.errors import Code, SerializationError
from rsched.models import Trigger
from rsched.settings import SchedulerSettings
from rsched.timing import DecisionMemo, decide, jitter_offset_ms

log = logging.getLogger(__name__)
# A due job whose trigger cannot be decoded is moved this far ahead (and logged each time).
PARK_MS = 60_000


@dataclass(frozen=True)
class TickReport:
    now_ms: int
    fired: int
    shards: int
    next_due_ms: int | None  # earliest due score seen after this tick


class Scheduler:
    def __init__(self, engine: Engine, cfg: SchedulerSettings, clock: Clock,
                 owner: str | None = None) -> None:
        self.engine = engine
        self.cfg = cfg
        self.clock = clock
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.static = cfg.shards is not None
        self.owned: set[int] = set(cfg.shards or [])
        self._lease_ms = int(cfg.lease_s * 1000)
        self._ahead = cfg.lookahead_ms
        self._leases_at = -(10**15)
        self._triggers: dict[bytes, Trigger] = {}
        # Decisions per (trigger blob, slot), kept across ticks (bounded): jobs that share
        # a schedule share each slot's decision and next fire, however drains split them.
        self._decisions = DecisionMemo()
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._sleep_until: int | None = None
        # When each owned shard needs a look next (_look_at; None: nothing due later).
        # Between full scans (every max_sleep_s) only shards whose look is due, unknown,
        # or was moved earlier by a wake signal are peeked.
        self._heads: dict[int, int | None] = {}
        self._woken: dict[int, int] = {}  # shard -> earliest look signalled since a tick
        metrics.SHARDS_OWNED.add(self)

    # -- one iteration ------------------------------------------------------------------
    async def tick(self, full: bool = True) -> TickReport:
        """Fire everything due now on the owned shards. ``full=False`` (the run loop
        between full scans) peeks only the shards whose known head is due or unknown."""
        now = await self.clock.now_ms()
        if not self.static and now - self._leases_at >= self._lease_ms // 3:
            await self._balance_leases(now)
            self._leases_at = now
        if full:
            self._heads.clear()
        self._merge_wakes()
        # with a lookahead, shards whose look comes within half of it go along: their
        # fires join this round trip instead of waking the scheduler again a moment later
        soon = now + self._ahead // 2
        shards = sorted(s for s in self.owned if _due(self._heads.get(s, now), soon))
        fired = await self._drain(shards, now)
        self._merge_wakes()  # signals that came while draining
        heads = [h for s, h in self._heads.items() if h is not None and s in self.owned]
        return TickReport(now, fired, len(self.owned), min(heads, default=None))

    def _merge_wakes(self) -> None:
        for shard in set(self._heads) - self.owned:
            del self._heads[shard]
        for shard, score in self._woken.items():
            head = self._heads.get(shard, score)
            if shard in self._heads and (head is None or score < head):
                self._heads[shard] = score
        self._woken.clear()

    async def _drain(self, shards: list[int], now: int) -> int:
        """Peek the shards, fire what is due, and peek again the shards that filled a
        batch: each round is one pipelined round trip (the fires, then the next peeks)."""
        owner = "" if self.static else self.owner
        fired = 0
        fires: dict[int, Sequence[Fire]] = {}
        while shards or fires:
            codes, peeks = await self.engine.firing.fire_and_peek(
                now, owner, fires, shards, self.cfg.batch, self._ahead)
            for shard, code in codes.items():
                if code == Code.FENCED:
                    log.warning("lost lease on shard %d", shard)
                    self.owned.discard(shard)
                    self._heads.pop(shard, None)
                    peeks.pop(shard, None)
                else:
                    fired += code
                    _observe_fires(fires.get(shard, ()), now, int(code))
            fires, shards = {}, []
            for shard, (head, items) in peeks.items():
                planned = [self._plan(i, now) for i in items]
                nexts = [n for n in (head, *(f.next_ms for f in planned)) if n is not None]
                self._heads[shard] = self._look_at(min(nexts), now) if nexts else None
                if planned:
                    fires[shard] = planned
                if len(items) >= self.cfg.batch:
                    shards.append(shard)  # more may be due: peek again after this fire
        return fired

    def _look_at(self, score: int, now: int) -> int:
        """When a shard whose earliest due score is ``score`` needs a look: inside the
        lookahead at the score itself (peek_due stopped there: a member that fires only
        when due), else when it enters the lookahead, yet at most every half lookahead,
        so that fires go in batches of half a lookahead's slots."""
        if score <= now + self._ahead:
            return score
        return max(score - self._ahead, now + self._ahead // 2)

    def _plan(self, item: DueItem, now: int) -> Fire:
        if item.is_retry:  # a timed resume puts its job back due now: peek again
            return Fire(item.member, item.score, now if item.is_resume else None)
        if not item.sched:  # job hash gone: fire_due drops the orphaned due entry
            return Fire(item.member, item.score, None, fire=False)
        key, slot = (item.sched, item.score), int(float(item.score))
        d = self._decisions.get(key, now)
        if d is None:
            trigger = self._trigger(item)
            if trigger is None:  # park it a minute later so it cannot block the shard
                return Fire(item.member, item.score, now + PARK_MS, fire=False)
            if trigger.jitter_ms:
                return _jittered(item, trigger, now)
            d = decide(trigger, slot, now)
            self._decisions.put(key, trigger, slot, now, d)
        # a member read later than now (peek_due's lookahead) fires ahead (fire_due.lua)
        return Fire(item.member, item.score, d.next_ms, d.fire, d.skipped)

    def _trigger(self, item: DueItem) -> Trigger | None:
        t = self._triggers.get(item.sched)
        if t is None:
            try:
                t = codec.decode_trigger(item.sched)
            except SerializationError:
                log.error("job %s: unreadable trigger; parked for %d s", item.member,
                          PARK_MS // 1000)
                return None
            if len(self._triggers) > 10_000:
                self._triggers.clear()
            self._triggers[item.sched] = t
        return t

    # -- leases -------------------------------------------------------------------------
    async def _balance_leases(self, now: int) -> None:
        """Hold about shards/alive_schedulers shards; take free ones, shed extras."""
        alive = await self.engine.firing.scheduler_heartbeat(self.owner, now, self._lease_ms)
        target = math.ceil(self.engine.shards / max(1, alive))
        taken: list[int] = []
        for shard in range(self.engine.shards):
            mine = shard in self.owned
            if not mine and len(self.owned) >= target:
                continue
            token = await self.engine.firing.take_lease(shard, self.owner, self._lease_ms)
            if token:
                if not mine:
                    taken.append(shard)
                self.owned.add(shard)
            elif mine:
                log.warning("shard %d taken over by another scheduler", shard)
                self.owned.discard(shard)
        if taken:
            log.info("%s took shards %s (%d alive schedulers)", self.owner, taken, alive)
        while len(self.owned) > target:
            shard = max(self.owned)
            await self.engine.firing.release_lease(shard, self.owner)
            self.owned.discard(shard)
            log.info("released shard %d to rebalance", shard)

    # -- loop ---------------------------------------------------------------------------
    async def run(self) -> None:
        listener = asyncio.create_task(self._listen_wake())
        backoff = 0.05
        full_at = 0.0  # monotonic time of the next full scan (only paces the scans)
        try:
            while not self._stopping.is_set():
                try:
                    full = time.monotonic() >= full_at
                    if full:
                        full_at = time.monotonic() + self.cfg.max_sleep_s
                    report = await self.tick(full)
                    backoff = 0.05
                except REDIS_DOWN as exc:
                    log.warning("redis unavailable (%s); retrying in %.2fs", exc, backoff)
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                await self._sleep(self._sleep_s(report))
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    def _sleep_s(self, report: TickReport) -> float:
        if report.next_due_ms is None:
            self._sleep_until = report.now_ms + int(self.cfg.max_sleep_s * 1000)
            return self.cfg.max_sleep_s
        self._sleep_until = report.next_due_ms
        return max(0.0, min(self.cfg.max_sleep_s, (report.next_due_ms - report.now_ms) / 1000))

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        self._wake.clear()
        waiter = asyncio.create_task(self._wake.wait())
        stopper = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({waiter, stopper}, timeout=seconds,
                           return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stopper.cancel()

    async def _listen_wake(self) -> None:
        async for shard, score in self.engine.firing.wake_signals():
            if shard not in self.owned:
                continue
            look = score - self._ahead  # it may fire this much ahead
            self._woken[shard] = min(look, self._woken.get(shard, look))
            if self._sleep_until is None or look < self._sleep_until:
                self._wake.set()

    async def stop(self, grace_s: float = 0.0) -> None:
        self._stopping.set()
        if not self.static:
            for shard in list(self.owned):
                try:
                    await self.engine.firing.release_lease(shard, self.owner)
                except REDIS_DOWN:
                    break
            await self.engine.firing.forget_scheduler(self.owner)
        self.owned.clear()


def _jittered(item: DueItem, trigger: Trigger, now: int) -> Fire:
    """A jittered job: its due score is its slot (the job's `next`) plus an offset. The
    run keeps the slot (exactly once per slot); lateness counts from the jittered time."""
    score = int(float(item.score))
    slot = int(item.slot) if item.slot else score
    d = decide(trigger, slot, now - (score - slot))
    due = None
    if d.next_ms is not None:
        due = d.next_ms + jitter_offset_ms(item.member, d.next_ms, trigger.jitter_ms)
    return Fire(item.member, item.score, due, d.fire, d.skipped, slot_ms=slot,
                next_slot_ms=d.next_ms)


def _observe_fires(fires: Sequence[Fire], now: int, fired: int) -> None:
    """Count a shard's fires and observe the lag (slot -> now) of the ones it planned."""
    for f in fires:
        if f.fire:
            metrics.FIRE_LAG.observe(max(0.0, now - float(f.read_score)) / 1000)
    if fired > 0:
        metrics.FIRES.inc(fired)


def _due(head: int | None, now: int) -> bool:
    return head is not None and head <= now
