"""Transitions of runs on workers: read, start, complete, fail, reclaim, extend.

Owns: the workers' consumer groups, start_runs, complete_runs, fail_run, reclaim_runs,
lease extension, queue trimming, worker heartbeats and cancel signals. Must not: run
tasks, decide retries (the worker does) or read the clock; callers pass ``now_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from rsched.engine.connection import REDIS_DOWN
from rsched.engine.core import Part
from rsched.engine.keys import WORKER_GROUP
from rsched.engine.types import Delivery, Outcome, delivery, text
from rsched.errors import Code
from rsched.models import TERMINAL_ARG, RunStatus


class Runs(Part):
    async def ensure_groups(self, queues: Iterable[str]) -> None:
        for stream in self.core.streams(queues):
            await self.core.ensure_group(stream, WORKER_GROUP)

    async def read_runs(self, consumer: str, queues: Sequence[str], count: int,
                        block_ms: int | None) -> list[Delivery]:
        streams = {s: ">" for s in self.core.streams(queues)}
        reply = await self.redis.xreadgroup(WORKER_GROUP, consumer, streams, count=count,
                                            block=block_ms)
        out: list[Delivery] = []
        for stream, entries in reply or []:
            shard, queue = self.core.stream_of(text(stream))
            for entry_id, f in entries:
                out.append(delivery(shard, queue, entry_id, f))
        return out

    def _start_args(self, shard: int, now_ms: int, worker: str, runs: Sequence[Delivery],
                    defer_ms: int) -> tuple[dict[str, str], dict[str, Any]]:
        k = self.shard_keys[shard]
        flat: list[Any] = []
        for d in runs:  # a run fired ahead is recorded as started at its slot
            flat += [d.run_id, d.attempt, d.entry_id,
                     d.not_before_ms if d.not_before_ms > now_ms else ""]
        return {"events": k.events, "due": k.due}, {
            "now_ms": now_ms, "run_prefix": k.run_prefix, "queue_prefix": k.queue_prefix,
            "group": WORKER_GROUP, "worker": worker, "maxlen": self.core.maxlen,
            "held_prefix": k.held_prefix, "defer_ms": defer_ms, "items": flat}

    async def start_runs(self, now_ms: int, worker: str, by_shard: dict[int, list[Delivery]],
                         defer_ms: int = 200) -> dict[int, list[int]]:
        """start_runs for several shards in one pipelined round trip; codes by shard. A
        run whose job's concurrency limit is full is deferred by ``defer_ms``."""
        order = [s for s, runs in by_shard.items() if runs]

        def build(pipe: Any) -> None:
            for s in order:
                self.core.scripts.queue(pipe, "start_runs", *self._start_args(
                    s, now_ms, worker, by_shard[s], defer_ms))

        replies = await self.core.scripts.execute(self.redis, build)
        return {s: list(r) for s, r in zip(order, replies, strict=True)}

    def _complete_args(self, shard: int, now_ms: int, ttl_ms: int,
                       outcomes: Sequence[Outcome]) -> tuple[dict[str, str], dict[str, Any]]:
        k = self.shard_keys[shard]
        flat: list[Any] = []
        for o in outcomes:
            flat += [o.run_id, o.attempt, o.status.value, o.result]
        return {"events": k.events}, {
            "now_ms": now_ms, "run_prefix": k.run_prefix, "queue_prefix": k.queue_prefix,
            "group": WORKER_GROUP, "ttl_ms": ttl_ms, "maxlen": self.core.maxlen,
            "ended": TERMINAL_ARG, "held_prefix": k.held_prefix, "items": flat}

    async def complete_runs(self, now_ms: int, ttl_ms: int,
                            by_shard: dict[int, list[Outcome]]) -> list[int]:
        """Record outcomes of several shards in one pipelined round trip."""
        order = [s for s, outs in by_shard.items() if outs]

        def build(pipe: Any) -> None:
            for s in order:
                keys, args = self._complete_args(s, now_ms, ttl_ms, by_shard[s])
                self.core.scripts.queue(pipe, "complete_runs", keys, args)

        replies = await self.core.scripts.execute(self.redis, build)
        return [code for reply in replies for code in reply]

    async def fail_run(self, shard: int, now_ms: int, ttl_ms: int, run_id: str, attempt: int,
                       error: str, retry_at_ms: int | None, final: RunStatus) -> int:
        k = self.shard_keys[shard]
        res = await self.core.call("fail_run", {"due": k.due, "events": k.events,
                                               "dead": k.dead}, {
            "now_ms": now_ms, "run_prefix": k.run_prefix, "queue_prefix": k.queue_prefix,
            "group": WORKER_GROUP, "ttl_ms": ttl_ms, "maxlen": self.core.maxlen, "run_id": run_id,
            "attempt": attempt, "error": error[:2000],
            "retry_at_ms": -1 if retry_at_ms is None else retry_at_ms, "final": final.value,
            "held_prefix": k.held_prefix})
        if int(res) == Code.RETRYING and retry_at_ms is not None:
            # Schedulers peek only shards whose head is due between full scans: tell them
            # about the retry's slot. Best effort; the outcome is already recorded and the
            # next full scan (scheduler.max_sleep_s) finds the retry anyway.
            with contextlib.suppress(*REDIS_DOWN):
                await self.redis.publish(self.global_keys.wake_channel, f"{shard} {retry_at_ms}")
        return int(res)

    async def reclaim_runs(self, shard: int, queue: str, now_ms: int, consumer: str,
                           min_idle_ms: int, count: int, ttl_ms: int) -> list[Delivery]:
        k = self.shard_keys[shard]
        res = await self.core.call("reclaim_runs", {"stream": k.queue(queue), "events": k.events,
                                                   "dead": k.dead}, {
            "now_ms": now_ms, "group": WORKER_GROUP, "consumer": consumer,
            "min_idle_ms": min_idle_ms, "count": count, "run_prefix": k.run_prefix,
            "ttl_ms": ttl_ms, "maxlen": self.core.maxlen, "ended": TERMINAL_ARG,
            "held_prefix": k.held_prefix})
        return [Delivery(shard, queue, text(res[i]), text(res[i + 1]), text(res[i + 2]),
                         int(res[i + 3]), int(res[i + 4]), res[i + 5])
                for i in range(0, len(res), 6)]

    async def ack_entry(self, d: Delivery) -> None:
        await self.redis.xack(self.shard_keys[d.shard].queue(d.queue), WORKER_GROUP, d.entry_id)

    async def extend_runs(self, consumer: str, runs: Sequence[Delivery]) -> list[int]:
        """Reset the idle time of in-flight entries so the reclaimer leaves them alone,
        fenced by attempt (extend_runs.lua), in one pipelined round trip. One code per
        run, in order: 0 extended, -1 gone, -3 lost (reclaimed, ended or not this
        worker's), in which case the entry is left as it is."""
        by_stream: dict[tuple[int, str], list[int]] = {}
        for i, d in enumerate(runs):
            by_stream.setdefault((d.shard, d.queue), []).append(i)

        def build(pipe: Any) -> None:
            for (shard, queue), idx in by_stream.items():
                k = self.shard_keys[shard]
                flat: list[Any] = []
                for i in idx:
                    flat += [runs[i].run_id, runs[i].attempt, runs[i].entry_id]
                self.core.scripts.queue(pipe, "extend_runs", {"stream": k.queue(queue)}, {
                    "group": WORKER_GROUP, "worker": consumer, "run_prefix": k.run_prefix,
                    "items": flat})

        codes = [0] * len(runs)
        if by_stream:
            replies = await self.core.scripts.execute(self.redis, build)
            for idx, reply in zip(by_stream.values(), replies, strict=True):
                for i, code in zip(idx, reply, strict=True):
                    codes[i] = int(code)
        return codes

    async def trim_queues(self, queues: Sequence[str]) -> int:
        """Drop queue entries every group has acked (below the oldest pending or unread)."""
        return sum([await self.core.trim_acked(s) for s in self.core.streams(queues)])

    async def heartbeat(self, worker: str, now_ms: int) -> None:
        await self.redis.zadd(self.global_keys.workers, {worker: now_ms})

    async def forget_worker(self, worker: str) -> None:
        await self.redis.zrem(self.global_keys.workers, worker)

    async def register_tasks(self, names: Iterable[str]) -> None:
        names = list(names)
        if names:
            await self.redis.sadd(self.global_keys.tasks, *names)

    async def cancel_signals(self, ready: asyncio.Event | None = None) -> AsyncIterator[str]:
        """Run ids whose running attempt must stop; ``ready`` is set once subscribed (a
        signal sent before that is missed: extend_runs answers SIGNALLED for it later)."""
        async for data in self.core.subscribe(self.global_keys.cancel_channel, ready):
            yield data
