"""Transitions of the scheduler: peek due entries, fire them, hold shard leases.

Owns: the peek_due and fire_due scripts (pipelined over shards: fire_and_peek),
take_lease,
release_lease, scheduler heartbeats and wake signals. Must not: compute fire times
(the scheduler does) or read the clock; callers pass ``now_ms``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from rsched.engine.core import Part
from rsched.engine.types import DueItem, Fire, text


class Firing(Part):
    def _peek_args(self, shard: int, now_ms: int, limit: int, ahead_ms: int
                   ) -> tuple[dict[str, str], dict[str, Any]]:
        k = self.shard_keys[shard]
        return {"due": k.due}, {"now_ms": now_ms, "limit": limit, "job_prefix": k.job_prefix,
                                "ahead_ms": ahead_ms}

    @staticmethod
    def _parse_peek(res: list[Any]) -> tuple[int | None, list[DueItem]]:
        head = int(float(res[0]))
        items = [DueItem(text(res[i]), text(res[i + 1]), res[i + 2], text(res[i + 3]))
                 for i in range(1, len(res), 4)]
        return (None if head < 0 else head), items

    def _fire_args(self, shard: int, now_ms: int, owner: str, fires: Sequence[Fire]
                   ) -> tuple[dict[str, str], dict[str, Any]]:
        k = self.shard_keys[shard]
        flat: list[Any] = []
        for f in fires:
            flat += [f.member, f.read_score, -1 if f.next_ms is None else f.next_ms,
                     1 if f.fire else 0, f.skipped,
                     "" if f.slot_ms is None else f.slot_ms,
                     "" if f.next_slot_ms is None else f.next_slot_ms]
        return {"due": k.due, "events": k.events, "lease": k.lease, "jobs": k.jobs}, {
            "now_ms": now_ms, "job_prefix": k.job_prefix, "run_prefix": k.run_prefix,
            "queue_prefix": k.queue_prefix, "owner": owner, "maxlen": self.core.maxlen,
            "done_ttl_ms": self.core.done_ttl_ms,
            "channel": self.global_keys.cancel_channel, "items": flat}

    async def fire_and_peek(self, now_ms: int, owner: str, fires: dict[int, Sequence[Fire]],
                            peek: Sequence[int], limit: int, ahead_ms: int = 0
                            ) -> tuple[dict[int, int], dict[int, tuple[int | None,
                                                                      list[DueItem]]]]:
        """fire_due for several shards, then peek_due for several (possibly the same)
        shards, in one pipelined round trip; each script stays one atomic step, and a peek
        queued after a fire of its shard sees that fire's result. A peek with ``ahead_ms``
        also returns the job members due within that lookahead that may fire ahead of
        time (peek_due.lua says which). Returns the fire codes
        by shard (runs enqueued, or -3 when another scheduler holds the lease) and the
        peeks by shard."""
        fired = list(fires)

        def build(pipe: Any) -> None:
            for shard in fired:
                self.core.scripts.queue(pipe, "fire_due",
                                   *self._fire_args(shard, now_ms, owner, fires[shard]))
            for shard in peek:
                self.core.scripts.queue(pipe, "peek_due", *self._peek_args(shard, now_ms, limit,
                                                                 ahead_ms))

        replies = await self.core.scripts.execute(self.redis, build)
        codes = {shard: int(r) for shard, r in zip(fired, replies, strict=False)}
        peeks = {shard: self._parse_peek(r)
                 for shard, r in zip(peek, replies[len(fired):], strict=True)}
        return codes, peeks

    async def take_lease(self, shard: int, owner: str, ttl_ms: int) -> int:
        k = self.shard_keys[shard]
        return int(await self.core.call("take_lease", {"lease": k.lease, "fence": k.fence},
                                    {"owner": owner, "ttl_ms": ttl_ms}))

    async def scheduler_heartbeat(self, owner: str, now_ms: int, ttl_ms: int) -> int:
        """Record a live scheduler; returns how many are alive (for shard balancing)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(self.global_keys.schedulers, {owner: now_ms})
        pipe.zremrangebyscore(self.global_keys.schedulers, "-inf", now_ms - ttl_ms)
        pipe.zcard(self.global_keys.schedulers)
        return int((await pipe.execute())[-1])

    async def forget_scheduler(self, owner: str) -> None:
        await self.redis.zrem(self.global_keys.schedulers, owner)

    async def wake_signals(self) -> AsyncIterator[tuple[int, int]]:
        """(shard, score) each time a job is scheduled before its shard's head."""
        async for data in self.core.subscribe(self.global_keys.wake_channel):
            shard, _, score = data.partition(" ")
            yield int(shard), int(float(score))

    async def release_lease(self, shard: int, owner: str) -> None:
        k = self.shard_keys[shard]
        await self.core.call("release_lease", {"lease": k.lease}, {"owner": owner})

