"""Queue-wide limits and priorities: the settings, the slots, the rate, the deferrals.

Owns: a queue's limits hash and levels set (``{q:<queue>}``), take_queue_slots and the
release and renewal of its slot holders, defer_runs on the shards. Must not: decide
which runs to start or which lanes to read (the worker's queue gate does), or read the
clock; callers pass ``now_ms``.

A queue spans every shard, so its keys have their own hash tag: taking slots is a script
call of its own, pipelined beside the shard scripts (Redis Cluster runs each script on
one slot). A slot holder is ``"<run id>/<attempt>"`` with a lease deadline; a worker
renews it with its runs' leases and removes it after the outcome is recorded, and
take_queue_slots drops holders past their deadline, so a dead worker's slot comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from rsched.engine.connection import REDIS_DOWN
from rsched.engine.core import Part
from rsched.engine.keys import WORKER_GROUP
from rsched.engine.schema import QUEUE_LIMITS
from rsched.engine.types import Delivery, text
from rsched.models import QueueLimits


@dataclass(frozen=True)
class QueueConfig:
    """What a worker needs of a queue: its limits and the explicit priorities in use."""

    limits: QueueLimits
    levels: frozenset[int]

    @property
    def limited(self) -> bool:
        return self.limits.concurrency is not None or self.limits.rate is not None


@dataclass(frozen=True)
class SlotReply:
    codes: list[int]  # per holder: Code.OK, DEFERRED (full), RATE_LIMITED
    wait_ms: int  # when the first start refused by the rate limit may pass it
    interval_ms: float  # spacing of starts under the rate limit (0: none)


def holder(d: Delivery) -> str:
    """The member a run's attempt holds a queue slot under."""
    return f"{d.run_id}/{d.attempt}"


_DEFAULT = QueueLimits()
# QueueLimits field -> its field in the limits hash (period_s is stored in ms)
_FIELDS = {name: QUEUE_LIMITS.by_name["period_ms" if name == "period_s" else name]
           for name in QueueLimits.__struct_fields__}


def parse_limits(raw: Mapping[Any, Any]) -> QueueLimits:
    h = QUEUE_LIMITS.decode(raw)
    if "period_ms" in h:
        h["period_s"] = h.pop("period_ms") / 1000
    return QueueLimits(**h)


class QueueLimitsPart(Part):
    async def set_queue_limits(self, queue: str, limits: QueueLimits) -> None:
        """Replace a queue's limits (every field; unset ones are removed) atomically."""
        k = self.core.queue_keys(queue)
        given = {name: value for name, value in msgspec.structs.asdict(limits).items()
                 if value != getattr(_DEFAULT, name)}
        if "period_s" in given:
            given["period_s"] = round(limits.period_s * 1000)
        fields = {_FIELDS[name].wire: value for name, value in given.items()}
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(k.limits)
        if fields:
            pipe.hset(k.limits, mapping=fields)
        await pipe.execute()

    async def queue_limits(self, queue: str) -> QueueLimits:
        return parse_limits(await self.redis.hgetall(self.core.queue_keys(queue).limits))

    async def queue_configs(self, queues: Sequence[str]) -> dict[str, QueueConfig]:
        """Limits and levels of several queues in one pipelined round trip."""
        cmds: list[tuple[Any, ...]] = []
        for q in queues:
            k = self.core.queue_keys(q)
            cmds += [("HGETALL", k.limits), ("SMEMBERS", k.levels)]
        replies = await self.core.raw(cmds)
        out = {}
        for i, q in enumerate(queues):
            raw, levels = replies[2 * i], replies[2 * i + 1]
            if isinstance(raw, list):  # unparsed HGETALL (the hiredis path)
                raw = dict(zip(raw[::2], raw[1::2], strict=True))
            out[q] = QueueConfig(parse_limits(raw), frozenset(int(text(v)) for v in levels))
        return out

    async def take_queue_slots(self, now_ms: int, lease_ms: int,
                               by_queue: Mapping[str, Sequence[str]]) -> dict[str, SlotReply]:
        """take_queue_slots for several queues in one pipelined round trip."""
        order = [q for q, members in by_queue.items() if members]

        def build(pipe: Any) -> None:
            for q in order:
                k = self.core.queue_keys(q)
                self.core.scripts.queue(pipe, "take_queue_slots", {
                    "limits": k.limits, "held": k.held, "rate": k.rate}, {
                    "now_ms": now_ms, "lease_ms": lease_ms, "items": list(by_queue[q])})

        replies = await self.core.scripts.execute(self.redis, build)
        return {q: SlotReply([int(c) for c in r[2:]], int(r[0]), int(r[1]) / 1000)
                for q, r in zip(order, replies, strict=True)}

    async def release_queue_slots(self, by_queue: Mapping[str, Iterable[str]]) -> None:
        """Give slots back (after their runs' outcomes are recorded): one ZREM a queue."""
        cmds = [("ZREM", self.core.queue_keys(q).held, *members)
                for q, members in by_queue.items() if members]
        if cmds:
            await self.core.raw(cmds)

    async def renew_queue_slots(self, deadline_ms: int,
                                by_queue: Mapping[str, Iterable[str]],
                                replace: Mapping[str, Iterable[str]] | None = None) -> None:
        """Move held slots' lease deadlines (ZADD XX: a slot already dropped as expired
        is not taken back). ``replace``: holders of earlier attempts to drop, for runs
        a reclaim hands over (the new attempt holds the slot, ZADD without XX)."""
        cmds: list[tuple[Any, ...]] = []
        for q, old in (replace or {}).items():
            cmds.append(("ZREM", self.core.queue_keys(q).held, *old))
        for q, members in by_queue.items():
            flat = [x for m in members for x in (deadline_ms, m)]
            if flat:
                xx = () if replace and q in replace else ("XX",)
                cmds.append(("ZADD", self.core.queue_keys(q).held, *xx, *flat))
        if cmds:
            await self.core.raw(cmds)

    async def defer_runs(self, now_ms: int, why: str,
                         runs: Sequence[tuple[Delivery, int]]) -> list[int]:
        """defer_runs (run, due ms) over shards in one pipelined round trip; one code per
        run, in order. Schedulers are told about the earliest deferral of each shard."""
        by_shard: dict[int, list[int]] = {}
        for i, (d, _) in enumerate(runs):
            by_shard.setdefault(d.shard, []).append(i)

        def build(pipe: Any) -> None:
            for shard, idx in by_shard.items():
                k = self.shard_keys[shard]
                flat: list[Any] = []
                for i in idx:
                    d, at = runs[i]
                    flat += [d.run_id, d.attempt, d.entry_id, at]
                self.core.scripts.queue(pipe, "defer_runs", {"events": k.events, "due": k.due}, {
                    "now_ms": now_ms, "run_prefix": k.run_prefix, "queue_prefix": k.queue_prefix,
                    "group": WORKER_GROUP, "maxlen": self.core.maxlen, "why": why,
                    "items": flat})

        codes = [0] * len(runs)
        if not by_shard:
            return codes
        replies = await self.core.scripts.execute(self.redis, build)
        for idx, reply in zip(by_shard.values(), replies, strict=True):
            for i, code in zip(idx, reply, strict=True):
                codes[i] = int(code)
        await self._wake({shard: min(runs[i][1] for i in idx) for shard, idx in by_shard.items()})
        return codes

    async def _wake(self, earliest: Mapping[int, int]) -> None:
        # Best effort, like fail_run's: the schedulers' full scans find them anyway.
        with contextlib.suppress(*REDIS_DOWN):
            await asyncio.gather(*(self.redis.publish(self.global_keys.wake_channel,
                                                      f"{shard} {at}")
                                   for shard, at in earliest.items()))
