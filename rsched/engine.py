"""The one owner of Redis: typed methods over the Lua scripts and stream commands.

Owns: every state change of live jobs and runs (through scripts.py, with keys from
keys.py): creating and changing jobs, firing, starting, completing, failing and reclaiming
runs, leases and signals. Its read-only lookups live in queries.py, its archive side
(events out, restores in) in archive_feed.py, the shared plumbing in engine_base.py;
`Engine` is all of them. Must not: compute fire times, run tasks or sleep; callers pass
``now_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from rsched import codec
from rsched.archive_feed import ArchiveFeed
from rsched.errors import ValidationError, raise_for_code
from rsched.keys import JOB_ID, WORKER_GROUP, validate_queue
from rsched.models import JobDef, RunStatus
from rsched.queries import Queries
from rsched.wire import Delivery, DueItem, Fire, Outcome, job_of_run, text

log = logging.getLogger(__name__)

__all__ = ["Delivery", "DueItem", "Engine", "Fire", "Outcome", "job_of_run"]


class Engine(Queries, ArchiveFeed):
    """Every state transition of live jobs and runs, each one Lua script call (or a
    pipeline of them); the read-only lookups are in queries.py and the archive's side
    (including the restores) in archive_feed.py."""

    # -- jobs ---------------------------------------------------------------------------
    @staticmethod
    def _check_job(job_id: str, d: JobDef) -> None:
        if not JOB_ID.match(job_id):
            raise ValidationError(f"invalid job id {job_id!r}: use 1-128 of [A-Za-z0-9_.-]")
        validate_queue(d.queue)

    def _schedule_args(self, job_id: str, d: JobDef, now_ms: int, next_ms: int | None,
                       expect_version: int) -> tuple[dict[str, str], dict[str, Any]]:
        self._check_job(job_id, d)
        k = self.keys_for(job_id)
        return {"due": k.due, "events": k.events, "jobs": k.jobs}, {
            "now_ms": now_ms, "job_prefix": k.job_prefix, "job_id": job_id,
            "next_ms": -1 if next_ms is None else next_ms, "expect_ver": expect_version,
            "spec": codec.encode(d.spec()), "sched": codec.encode(d.trigger()),
            "queue": d.queue, "tenant": d.tenant, "max_att": d.retry.max_attempts,
            "overlap": d.overlap.value, "maxlen": self.maxlen, "wake": self.g.wake_channel,
            "shard": k.shard}

    async def schedule_job(self, job_id: str, d: JobDef, *, now_ms: int, next_ms: int | None,
                           expect_version: int) -> int:
        ver = await self._call("schedule_job",
                               *self._schedule_args(job_id, d, now_ms, next_ms, expect_version))
        raise_for_code(ver, script="schedule_job", job_id=job_id)
        await self.redis.sadd(self.g.queues, d.queue)
        return int(ver)

    async def schedule_many(self, jobs: Sequence[tuple[str, JobDef, int | None]], *,
                            now_ms: int, chunk: int = 1000) -> list[int]:
        """Create jobs (id, definition, first fire) in pipelined round trips of ``chunk``
        schedule_job calls. Each job is created atomically, the batch is not: returns one
        code per job, its version (1) or -4 when the id already exists."""
        for job_id, d, _ in jobs:  # bad input fails before anything is written
            self._check_job(job_id, d)
        out: list[int] = []
        sent: asyncio.Future[Sequence[Any]] | None = None
        for i in range(0, len(jobs), chunk):
            calls = [self._schedule_args(job_id, d, now_ms, nxt, 0)
                     for job_id, d, nxt in jobs[i:i + chunk]]

            def build(pipe: Any, calls: list[tuple[dict[str, str], dict[str, Any]]] = calls
                      ) -> None:
                for keys, args in calls:
                    self.scripts.queue(pipe, "schedule_job", keys, args)

            # Redis runs this chunk while the next one is built: one chunk in flight.
            nxt_sent = asyncio.ensure_future(self.scripts.execute(self.redis, build))
            try:
                await asyncio.sleep(0)  # let it write its commands
                if sent is not None:
                    out += [int(r) for r in await sent]
            except BaseException:
                nxt_sent.cancel()
                await asyncio.gather(nxt_sent, return_exceptions=True)
                raise
            sent = nxt_sent
        if sent is not None:
            out += [int(r) for r in await sent]
        queues = {d.queue for _, d, _ in jobs}
        if queues:
            await self.redis.sadd(self.g.queues, *queues)
        return out

    async def _job_op(self, name: str, job_id: str, now_ms: int, **extra: Any) -> Any:
        k = self.keys_for(job_id)
        keys = {"due": k.due, "events": k.events, "jobs": k.jobs}
        args: dict[str, Any] = {"now_ms": now_ms, "job_prefix": k.job_prefix, "job_id": job_id,
                                "maxlen": self.maxlen}
        script = self.scripts[name]
        if "done_ttl_ms" in script.args:
            args["done_ttl_ms"] = self.done_ttl_ms
        if "wake" in script.args:
            args |= {"wake": self.g.wake_channel, "shard": k.shard}
        if "run_prefix" in script.args:
            args["run_prefix"] = k.run_prefix
        if "queue_prefix" in script.args:
            args["queue_prefix"] = k.queue_prefix
        args |= extra
        res = await self._call(name, {n: keys[n] for n in script.keys}, args)
        if isinstance(res, int):
            # a refusal names the state found (read after it: for the message only)
            state = await self.redis.hget(k.job(job_id), "state") if res == -2 else None
            raise_for_code(res, script=name, job_id=job_id, state=text(state or b""))
        return res

    async def cancel_job(self, job_id: str, now_ms: int) -> None:
        await self._job_op("cancel_job", job_id, now_ms, channel=self.g.cancel_channel)

    async def pause_job(self, job_id: str, now_ms: int) -> None:
        await self._job_op("pause_job", job_id, now_ms)

    async def resume_job(self, job_id: str, now_ms: int) -> None:
        await self._job_op("resume_job", job_id, now_ms)

    async def run_now(self, job_id: str, now_ms: int) -> str:
        return text(await self._job_op("run_now", job_id, now_ms))

    # -- scheduler ----------------------------------------------------------------------
    def _peek_args(self, shard: int, now_ms: int, limit: int
                   ) -> tuple[dict[str, str], dict[str, Any]]:
        k = self.k[shard]
        return {"due": k.due}, {"now_ms": now_ms, "limit": limit, "job_prefix": k.job_prefix}

    @staticmethod
    def _parse_peek(res: list[Any]) -> tuple[int | None, list[DueItem]]:
        head = int(float(res[0]))
        items = [DueItem(text(res[i]), text(res[i + 1]), res[i + 2])
                 for i in range(1, len(res), 3)]
        return (None if head < 0 else head), items

    async def peek_due(self, shard: int, now_ms: int, limit: int) -> tuple[int | None,
                                                                            list[DueItem]]:
        return self._parse_peek(await self._call("peek_due",
                                                 *self._peek_args(shard, now_ms, limit)))

    def _fire_args(self, shard: int, now_ms: int, owner: str, fires: Sequence[Fire]
                   ) -> tuple[dict[str, str], dict[str, Any]]:
        k = self.k[shard]
        flat: list[Any] = []
        for f in fires:
            flat += [f.member, f.read_score, -1 if f.next_ms is None else f.next_ms,
                     1 if f.fire else 0, f.skipped]
        return {"due": k.due, "events": k.events, "lease": k.lease, "jobs": k.jobs}, {
            "now_ms": now_ms, "job_prefix": k.job_prefix, "run_prefix": k.run_prefix,
            "queue_prefix": k.queue_prefix, "owner": owner, "maxlen": self.maxlen,
            "done_ttl_ms": self.done_ttl_ms,
            "items": flat}

    async def fire_due(self, shard: int, now_ms: int, owner: str, fires: Sequence[Fire]) -> int:
        res = await self._call("fire_due", *self._fire_args(shard, now_ms, owner, fires))
        raise_for_code(int(res), script="fire_due")
        return int(res)

    async def fire_and_peek(self, now_ms: int, owner: str, fires: dict[int, Sequence[Fire]],
                            peek: Sequence[int], limit: int
                            ) -> tuple[dict[int, int], dict[int, tuple[int | None,
                                                                      list[DueItem]]]]:
        """fire_due for several shards, then peek_due for several (possibly the same)
        shards, in one pipelined round trip; each script stays one atomic step, and a peek
        queued after a fire of its shard sees that fire's result. Returns the fire codes
        by shard (runs enqueued, or -3 when another scheduler holds the lease) and the
        peeks by shard."""
        fired = list(fires)

        def build(pipe: Any) -> None:
            for shard in fired:
                self.scripts.queue(pipe, "fire_due",
                                   *self._fire_args(shard, now_ms, owner, fires[shard]))
            for shard in peek:
                self.scripts.queue(pipe, "peek_due", *self._peek_args(shard, now_ms, limit))

        replies = await self.scripts.execute(self.redis, build)
        codes = {shard: int(r) for shard, r in zip(fired, replies, strict=False)}
        peeks = {shard: self._parse_peek(r)
                 for shard, r in zip(peek, replies[len(fired):], strict=True)}
        return codes, peeks

    async def take_lease(self, shard: int, owner: str, ttl_ms: int) -> int:
        k = self.k[shard]
        return int(await self._call("take_lease", {"lease": k.lease, "fence": k.fence},
                                    {"owner": owner, "ttl_ms": ttl_ms}))

    async def scheduler_heartbeat(self, owner: str, now_ms: int, ttl_ms: int) -> int:
        """Record a live scheduler; returns how many are alive (for shard balancing)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(self.g.schedulers, {owner: now_ms})
        pipe.zremrangebyscore(self.g.schedulers, "-inf", now_ms - ttl_ms)
        pipe.zcard(self.g.schedulers)
        return int((await pipe.execute())[-1])

    async def forget_scheduler(self, owner: str) -> None:
        await self.redis.zrem(self.g.schedulers, owner)

    async def wake_signals(self) -> AsyncIterator[tuple[int, int]]:
        """(shard, score) each time a job is scheduled before its shard's head."""
        async for data in self._subscribe(self.g.wake_channel):
            shard, _, score = data.partition(" ")
            yield int(shard), int(float(score))

    async def cancel_signals(self) -> AsyncIterator[str]:
        """Run ids whose running attempt must stop."""
        async for data in self._subscribe(self.g.cancel_channel):
            yield data

    async def _subscribe(self, channel: str) -> AsyncIterator[str]:
        """Messages of ``channel``, forever: a lost subscription (Redis down, restarted,
        or any other error) is logged and made again with back-off, so a listener never
        dies silently. Messages published while unsubscribed are lost; every listener
        has a slower path that does not need them (full scans, lease checks)."""
        backoff = 0.1
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(channel)
                backoff = 0.1
                async for msg in pubsub.listen():
                    if msg["type"] == "message":
                        yield text(msg["data"])
            except Exception as exc:  # noqa: BLE001 - any failure means: subscribe again
                log.warning("subscription to %s lost (%s: %s); subscribing again in %.1fs",
                            channel, type(exc).__name__, exc, backoff)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def release_lease(self, shard: int, owner: str) -> None:
        k = self.k[shard]
        await self._call("release_lease", {"lease": k.lease}, {"owner": owner})

    # -- workers ------------------------------------------------------------------------
    async def ensure_groups(self, queues: Iterable[str]) -> None:
        for stream in self._streams(queues):
            try:
                await self.redis.xgroup_create(stream, WORKER_GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def read_runs(self, consumer: str, queues: Sequence[str], count: int,
                        block_ms: int | None) -> list[Delivery]:
        streams = {s: ">" for s in self._streams(queues)}
        reply = await self.redis.xreadgroup(WORKER_GROUP, consumer, streams, count=count,
                                            block=block_ms)
        out: list[Delivery] = []
        for stream, entries in reply or []:
            shard, queue = self._stream_of[text(stream)]
            for entry_id, f in entries:
                out.append(Delivery(shard, queue, text(entry_id), text(f[b"r"]), text(f[b"j"]),
                                    int(f[b"a"]), int(float(f[b"s"])), f[b"p"]))
        return out

    def _start_args(self, shard: int, now_ms: int, worker: str, runs: Sequence[Delivery]
                    ) -> tuple[dict[str, str], dict[str, Any]]:
        k = self.k[shard]
        flat: list[Any] = []
        for d in runs:
            flat += [d.run_id, d.attempt, d.entry_id]
        return {"events": k.events}, {
            "now_ms": now_ms, "run_prefix": k.run_prefix, "queue_prefix": k.queue_prefix,
            "group": WORKER_GROUP, "worker": worker, "maxlen": self.maxlen, "items": flat}

    async def start_runs(self, shard: int, now_ms: int, worker: str,
                         runs: Sequence[Delivery]) -> list[int]:
        return list(await self._call("start_runs",
                                     *self._start_args(shard, now_ms, worker, runs)))

    async def start_runs_many(self, now_ms: int, worker: str,
                              by_shard: dict[int, list[Delivery]]) -> dict[int, list[int]]:
        """start_runs for several shards in one pipelined round trip; codes by shard."""
        order = [s for s, runs in by_shard.items() if runs]

        def build(pipe: Any) -> None:
            for s in order:
                self.scripts.queue(pipe, "start_runs",
                                   *self._start_args(s, now_ms, worker, by_shard[s]))

        replies = await self.scripts.execute(self.redis, build)
        return {s: list(r) for s, r in zip(order, replies, strict=True)}

    def _complete_args(self, shard: int, now_ms: int, ttl_ms: int,
                       outcomes: Sequence[Outcome]) -> tuple[dict[str, str], dict[str, Any]]:
        k = self.k[shard]
        flat: list[Any] = []
        for o in outcomes:
            flat += [o.run_id, o.attempt, o.status.value, o.result]
        return {"events": k.events}, {
            "now_ms": now_ms, "run_prefix": k.run_prefix, "queue_prefix": k.queue_prefix,
            "group": WORKER_GROUP, "ttl_ms": ttl_ms, "maxlen": self.maxlen, "items": flat}

    async def complete_runs(self, now_ms: int, ttl_ms: int,
                            by_shard: dict[int, list[Outcome]]) -> list[int]:
        """Record outcomes of several shards in one pipelined round trip."""
        order = [s for s, outs in by_shard.items() if outs]

        def build(pipe: Any) -> None:
            for s in order:
                keys, args = self._complete_args(s, now_ms, ttl_ms, by_shard[s])
                self.scripts.queue(pipe, "complete_runs", keys, args)

        replies = await self.scripts.execute(self.redis, build)
        return [code for reply in replies for code in reply]

    async def fail_run(self, shard: int, now_ms: int, ttl_ms: int, run_id: str, attempt: int,
                       error: str, retry_at_ms: int | None, final: RunStatus) -> int:
        k = self.k[shard]
        res = await self._call("fail_run", {"due": k.due, "events": k.events,
                                               "dead": k.dead}, {
            "now_ms": now_ms, "run_prefix": k.run_prefix, "queue_prefix": k.queue_prefix,
            "group": WORKER_GROUP, "ttl_ms": ttl_ms, "maxlen": self.maxlen, "run_id": run_id,
            "attempt": attempt, "error": error[:2000],
            "retry_at_ms": -1 if retry_at_ms is None else retry_at_ms, "final": final.value})
        if int(res) == 1 and retry_at_ms is not None:
            # Schedulers peek only shards whose head is due between full scans: tell them
            # about the retry's slot. Best effort; the outcome is already recorded and the
            # next full scan (scheduler.max_sleep_s) finds the retry anyway.
            with contextlib.suppress(RedisConnectionError, RedisTimeoutError, OSError):
                await self.redis.publish(self.g.wake_channel, f"{shard} {retry_at_ms}")
        return int(res)

    async def reclaim_runs(self, shard: int, queue: str, now_ms: int, consumer: str,
                           min_idle_ms: int, count: int, ttl_ms: int) -> list[Delivery]:
        k = self.k[shard]
        res = await self._call("reclaim_runs", {"stream": k.queue(queue), "events": k.events,
                                                   "dead": k.dead}, {
            "now_ms": now_ms, "group": WORKER_GROUP, "consumer": consumer,
            "min_idle_ms": min_idle_ms, "count": count, "run_prefix": k.run_prefix,
            "ttl_ms": ttl_ms, "maxlen": self.maxlen})
        return [Delivery(shard, queue, text(res[i]), text(res[i + 1]), text(res[i + 2]),
                         int(res[i + 3]), int(float(res[i + 4])), res[i + 5])
                for i in range(0, len(res), 6)]

    async def ack_entry(self, d: Delivery) -> None:
        await self.redis.xack(self.k[d.shard].queue(d.queue), WORKER_GROUP, d.entry_id)

    async def extend_runs(self, consumer: str, runs: Sequence[Delivery]) -> None:
        """Reset the idle time of in-flight entries so the reclaimer leaves them alone."""
        by_stream: dict[str, list[str]] = {}
        for d in runs:
            by_stream.setdefault(self.k[d.shard].queue(d.queue), []).append(d.entry_id)
        pipe = self.redis.pipeline(transaction=False)
        for stream, ids in by_stream.items():
            pipe.xclaim(stream, WORKER_GROUP, consumer, 0, ids, justid=True)
        await pipe.execute()

    async def trim_queues(self, queues: Sequence[str]) -> int:
        """Drop queue entries every group has acked (below the oldest pending or unread)."""
        return sum([await self._trim_acked(s) for s in self._streams(queues)])

    async def heartbeat(self, worker: str, now_ms: int) -> None:
        await self.redis.zadd(self.g.workers, {worker: now_ms})

    async def forget_worker(self, worker: str) -> None:
        await self.redis.zrem(self.g.workers, worker)

    async def register_tasks(self, names: Iterable[str]) -> None:
        names = list(names)
        if names:
            await self.redis.sadd(self.g.tasks, *names)
