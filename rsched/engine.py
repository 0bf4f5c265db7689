"""The one owner of Redis: typed methods over the Lua scripts and stream commands.

Owns: key use (through keys.py), script calls (through scripts.py), reply parsing.
Must not: compute fire times, run tasks or sleep; callers pass ``now_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from rsched import codec
from rsched.errors import ConfigError, ValidationError, raise_for_code
from rsched.keys import (
    ARCHIVER_GROUP,
    JOB_ID,
    RETRY_PREFIX,
    WORKER_GROUP,
    GlobalKeys,
    ShardKeys,
    shard_of,
    validate_queue,
)
from rsched.models import (
    DeadLetter,
    Job,
    JobDef,
    JobState,
    Overlap,
    Run,
    RunStatus,
)
from rsched.scripts import Scripts
from rsched.settings import RedisSettings


@dataclass(frozen=True, slots=True)
class DueItem:
    member: str  # job id, or "r:<run id>" for a retry
    score: str  # exactly as read: the compare-and-set token for fire_due
    sched: bytes  # Trigger blob; b"" for retries

    @property
    def is_retry(self) -> bool:
        return self.member.startswith(RETRY_PREFIX)


@dataclass(frozen=True, slots=True)
class Fire:
    member: str
    read_score: str
    next_ms: int | None
    fire: bool = True
    skipped: int = 0


@dataclass(frozen=True, slots=True)
class Delivery:
    shard: int
    queue: str
    entry_id: str
    run_id: str
    job_id: str
    attempt: int
    slot_ms: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Outcome:
    run_id: str
    attempt: int
    status: RunStatus  # succeeded | cancelled
    result: str = ""


def job_of_run(run_id: str) -> str:
    return run_id.rsplit(":", 1)[0]


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _opt_int(v: Any) -> int | None:
    return int(v) if v not in (None, b"", "") else None


class Engine:
    def __init__(self, redis: Any, cfg: RedisSettings, *, events_maxlen: int = 1_000_000) -> None:
        self.redis = redis
        self.cfg = cfg
        self.shards = cfg.shards
        self.g = GlobalKeys(cfg.prefix)
        self.k = [ShardKeys(cfg.prefix, s) for s in range(cfg.shards)]
        self.scripts = Scripts()
        self.maxlen = events_maxlen
        self.done_ttl_ms = int(cfg.done_job_ttl_s * 1000)
        self._stream_of: dict[str, tuple[int, str]] = {}

    async def start(self) -> None:
        """Load scripts and check the shard count stored for this deployment."""
        await self.scripts.load(self.redis)
        await self.redis.hsetnx(self.g.meta, "shards", self.shards)
        stored = int(await self.redis.hget(self.g.meta, "shards"))
        if stored != self.shards:
            raise ConfigError(
                f"deployment {self.cfg.prefix!r} has {stored} shards, settings say {self.shards}"
            )

    def keys_for(self, job_id: str) -> ShardKeys:
        return self.k[shard_of(job_id, self.shards)]

    async def _call(self, name: str, keys: dict[str, str], args: dict[str, Any]) -> Any:
        return await self.scripts.call(self.redis, name, keys, args)

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
            raise_for_code(res, script=name, job_id=job_id)
        return res

    async def cancel_job(self, job_id: str, now_ms: int) -> None:
        await self._job_op("cancel_job", job_id, now_ms, channel=self.g.cancel_channel)

    async def pause_job(self, job_id: str, now_ms: int) -> None:
        await self._job_op("pause_job", job_id, now_ms)

    async def resume_job(self, job_id: str, now_ms: int) -> None:
        await self._job_op("resume_job", job_id, now_ms)

    async def run_now(self, job_id: str, now_ms: int) -> str:
        return _s(await self._job_op("run_now", job_id, now_ms))

    async def get_job(self, job_id: str) -> Job | None:
        raw = await self.redis.hgetall(self.keys_for(job_id).job(job_id))
        if not raw:
            return None
        h = {_s(k): v for k, v in raw.items()}
        last_run = _s(h["cur"]) if h.get("cur") else None
        return Job(
            id=job_id, state=JobState(_s(h["state"])), version=int(h["ver"]),
            queue=_s(h["queue"]), tenant=_s(h["tenant"]), spec=codec.decode_spec(h["spec"]),
            trigger=codec.decode_trigger(h["sched"]), overlap=Overlap(_s(h["overlap"])),
            next_ms=_opt_int(h.get("next")), last_slot_ms=_opt_int(h.get("last")),
            runs=int(h.get("runs", 0)), last_run_id=last_run,
        )

    async def list_jobs(self, shard: int, *, after: str = "", limit: int = 100) -> list[str]:
        """Job ids of one shard in creation order, starting after job id ``after``."""
        start = 0
        if after:
            rank = await self.redis.zrank(self.k[shard].jobs, after)
            start = 0 if rank is None else rank + 1
        ids = await self.redis.zrange(self.k[shard].jobs, start, start + limit - 1)
        return [_s(i) for i in ids]

    # -- runs ---------------------------------------------------------------------------
    async def get_run(self, run_id: str) -> Run | None:
        k = self.keys_for(job_of_run(run_id))
        raw = await self.redis.hgetall(k.run(run_id))
        return _run(run_id, raw) if raw else None

    async def job_runs(self, job_id: str, limit: int = 20) -> list[Run]:
        """The job's most recent runs still held in Redis (newest first)."""
        k = self.keys_for(job_id)
        total = int(await self.redis.hget(k.job(job_id), "runs") or 0)
        ids = [f"{job_id}:{n}" for n in range(total, max(0, total - limit), -1)]
        pipe = self.redis.pipeline(transaction=False)
        for rid in ids:
            pipe.hgetall(k.run(rid))
        rows = await pipe.execute()
        return [_run(rid, raw) for rid, raw in zip(ids, rows, strict=True) if raw]

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        out: list[DeadLetter] = []
        for k in self.k:
            for entry_id, f in await self.redis.xrevrange(k.dead, count=limit):
                h = {_s(a): _s(b) for a, b in f.items()}
                out.append(DeadLetter(entry_id=_s(entry_id), run_id=h["r"], job_id=h["j"],
                                      queue=h["q"], status=RunStatus(h["st"]),
                                      attempt=int(h["a"]), error=h["e"], at_ms=int(h["t"])))
        out.sort(key=lambda d: d.at_ms, reverse=True)
        return out[:limit]

    # -- scheduler ----------------------------------------------------------------------
    def _peek_args(self, shard: int, now_ms: int, limit: int
                   ) -> tuple[dict[str, str], dict[str, Any]]:
        k = self.k[shard]
        return {"due": k.due}, {"now_ms": now_ms, "limit": limit, "job_prefix": k.job_prefix}

    @staticmethod
    def _parse_peek(res: list[Any]) -> tuple[int | None, list[DueItem]]:
        head = int(float(res[0]))
        items = [DueItem(_s(res[i]), _s(res[i + 1]), res[i + 2])
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
        pubsub = self.redis.pubsub()
        await pubsub.subscribe(channel)
        try:
            async for msg in pubsub.listen():
                if msg["type"] == "message":
                    yield _s(msg["data"])
        finally:
            await pubsub.aclose()

    async def release_lease(self, shard: int, owner: str) -> None:
        k = self.k[shard]
        await self._call("release_lease", {"lease": k.lease}, {"owner": owner})

    # -- workers ------------------------------------------------------------------------
    def _streams(self, queues: Iterable[str]) -> dict[str, tuple[int, str]]:
        out = {}
        for q in queues:
            for k in self.k:
                out[k.queue(q)] = (k.shard, q)
        self._stream_of.update(out)
        return out

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
            shard, queue = self._stream_of[_s(stream)]
            for entry_id, f in entries:
                out.append(Delivery(shard, queue, _s(entry_id), _s(f[b"r"]), _s(f[b"j"]),
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
        return [Delivery(shard, queue, _s(res[i]), _s(res[i + 1]), _s(res[i + 2]),
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

    async def _trim_acked(self, stream: str) -> int:
        floor = await self._oldest_unacked(stream)
        if floor is None:
            return 0
        return int(await self.redis.xtrim(stream, minid=floor, approximate=False))

    async def _oldest_unacked(self, stream: str) -> str | None:
        """The smallest id some group still needs (oldest pending, else next unread)."""
        try:
            groups = await self.redis.xinfo_groups(stream)
        except ResponseError:
            return None
        floor: str | None = None
        for g in groups:
            pend = await self.redis.xpending(stream, g["name"])
            cand = _s(pend["min"]) if pend["pending"] else _next_id(_s(g["last-delivered-id"]))
            floor = cand if floor is None or _id_lt(cand, floor) else floor
        return floor

    async def heartbeat(self, worker: str, now_ms: int) -> None:
        await self.redis.zadd(self.g.workers, {worker: now_ms})

    async def forget_worker(self, worker: str) -> None:
        await self.redis.zrem(self.g.workers, worker)

    async def register_tasks(self, names: Iterable[str]) -> None:
        names = list(names)
        if names:
            await self.redis.sadd(self.g.tasks, *names)

    async def known_tasks(self) -> set[str]:
        return {_s(t) for t in await self.redis.smembers(self.g.tasks)}

    async def stream_lengths(self, queues: Sequence[str]) -> dict[str, int]:
        pipe = self.redis.pipeline(transaction=False)
        names = list(self._streams(queues)) + [k.events for k in self.k]
        for n in names:
            pipe.xlen(n)
        return dict(zip(names, await pipe.execute(), strict=True))

    # -- archive feed -------------------------------------------------------------------
    async def ensure_event_groups(self) -> None:
        for k in self.k:
            try:
                await self.redis.xgroup_create(k.events, ARCHIVER_GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def read_events(self, consumer: str, count: int, block_ms: int | None,
                          pending: bool = False) -> list[tuple[int, str, dict[bytes, bytes]]]:
        """Events of every shard as (shard, entry id, raw fields); ``pending`` re-reads this
        consumer's unacked ones (after a crash) instead of new ones."""
        streams = {k.events: ("0" if pending else ">") for k in self.k}
        shard_of_stream = {k.events.encode(): k.shard for k in self.k}
        if block_ms is None and hasattr(self.redis, "execute_many"):
            # the archiver's bulk path: the flat hiredis reply, one dict per entry
            [reply] = await self._raw([("XREADGROUP", "GROUP", ARCHIVER_GROUP, consumer,
                                        "COUNT", count, "STREAMS", *streams,
                                        *streams.values())])
            return [(shard_of_stream[stream], eid.decode(), _pairs(f))
                    for stream, entries in reply or [] for eid, f in entries]
        reply = await self.redis.xreadgroup(ARCHIVER_GROUP, consumer, streams, count=count,
                                            block=block_ms)
        # an entry trimmed while pending comes back without fields: an empty event
        return [(shard_of_stream[stream if isinstance(stream, bytes) else stream.encode()],
                 _s(eid), f or {}) for stream, entries in reply or [] for eid, f in entries]

    async def ack_events(self, ids: Sequence[tuple[int, str]]) -> None:
        by_shard: dict[int, list[str]] = {}
        for shard, eid in ids:
            by_shard.setdefault(shard, []).append(eid)
        await self._raw([("XACK", self.k[shard].events, ARCHIVER_GROUP, *eids)
                         for shard, eids in by_shard.items()])

    async def _raw(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Plain commands pipelined, replies unparsed: on the hiredis fast path when the
        client has one (redis-py packs ~150,000 XACK ids noticeably slower)."""
        execute_many = getattr(self.redis, "execute_many", None)
        if execute_many is not None:
            replies = await execute_many(commands)
        else:
            pipe = self.redis.pipeline(transaction=False)
            for cmd in commands:
                pipe.execute_command(*cmd)
            replies = await pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return list(replies)

    async def trim_events(self) -> int:
        """Drop events every group (the archivers) has acked."""
        return sum([await self._trim_acked(k.events) for k in self.k])

    async def claim_events(self, consumer: str, min_idle_ms: int,
                           count: int) -> list[tuple[int, str, dict[bytes, bytes]]]:
        """Take over events a dead archiver read but never acked."""
        out: list[tuple[int, str, dict[bytes, bytes]]] = []
        for k in self.k:
            reply = await self.redis.xautoclaim(k.events, ARCHIVER_GROUP, consumer, min_idle_ms,
                                                "0-0", count=count)
            out += [(k.shard, _s(eid), f)
                    for eid, f in reply[1] if f]
        return out

    async def events_lag_ms(self, now_ms: int) -> int:
        """Age of the oldest event not yet archived (0 when all are)."""
        oldest = [await self._oldest_unacked(k.events) for k in self.k]
        ages = []
        for k, floor in zip(self.k, oldest, strict=True):
            if floor is None:
                continue
            first = await self.redis.xrange(k.events, min=floor, count=1)
            if first:
                ages.append(max(0, now_ms - _split(_s(first[0][0]))[0]))
        return max(ages, default=0)

    async def restore_job(self, job_id: str, *, state: str, next_ms: int | None, version: int,
                          spec: bytes, sched: bytes, queue: str, tenant: str, max_att: int,
                          overlap: str, runs: int, last_ms: int | None,
                          created_ms: int) -> bool:
        """Recreate a job lost from Redis; False when it already exists (untouched)."""
        k = self.keys_for(job_id)
        res = await self._call("restore_job", {"due": k.due, "jobs": k.jobs}, {
            "job_prefix": k.job_prefix, "job_id": job_id, "state": state,
            "next_ms": -1 if next_ms is None else next_ms, "version": version, "spec": spec,
            "sched": sched, "queue": queue, "tenant": tenant, "max_att": max_att,
            "overlap": overlap, "runs": runs, "last_ms": -1 if last_ms is None else last_ms,
            "created_ms": created_ms, "done_ttl_ms": self.done_ttl_ms})
        return int(res) == 1

    async def restore_run(self, run_id: str, *, queue: str, tenant: str, attempt: int,
                          max_att: int, slot_ms: int, due_ms: int) -> bool:
        """Re-queue an unfinished run lost from Redis as a retry due at ``due_ms``."""
        job_id = job_of_run(run_id)
        k = self.keys_for(job_id)
        res = await self._call("restore_run", {"due": k.due}, {
            "run_prefix": k.run_prefix, "run_id": run_id, "job_id": job_id, "queue": queue,
            "tenant": tenant, "attempt": attempt, "max_att": max_att, "slot_ms": slot_ms,
            "due_ms": due_ms})
        return int(res) == 1

    async def due_count(self) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for k in self.k:
            pipe.zcard(k.due)
        return sum(await pipe.execute())


def _run(run_id: str, raw: dict[Any, Any]) -> Run:
    h = {_s(k): _s(v) for k, v in raw.items()}
    return Run(
        id=run_id, job_id=h.get("job", job_of_run(run_id)), queue=h.get("queue", ""),
        tenant=h.get("tenant", ""), status=RunStatus(h["st"]), attempt=int(h.get("att", 1)),
        slot_ms=int(float(h.get("slot", 0))), enqueued_ms=_opt_int(h.get("enq")),
        started_ms=_opt_int(h.get("start")), finished_ms=_opt_int(h.get("end")),
        worker=h.get("worker"), error=h.get("err"),
    )


def _pairs(flat: list[bytes] | None) -> dict[bytes, bytes]:
    it = iter(flat or ())
    return dict(zip(it, it))  # noqa: B905 (pairs: an even count by protocol)


def _split(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _id_lt(a: str, b: str) -> bool:
    return _split(a) < _split(b)


def _next_id(entry_id: str) -> str:
    ms, seq = _split(entry_id)
    return f"{ms}-{seq + 1}"
