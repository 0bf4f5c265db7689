"""Read-only lookups of the engine: jobs, runs, dead letters, counts.

Owns: reading job and run hashes, the jobs index, dead-letter streams and lengths into
typed models. Must not: change anything in Redis (state changes go through the Lua
scripts in the other engine parts).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from rsched import codec
from rsched.engine.core import Part
from rsched.engine.schema import JOB
from rsched.engine.types import job_of_run, parse_dead, parse_run, text
from rsched.models import (
    DeadLetter,
    Job,
    JobState,
    Overlap,
    Run,
    ShardLease,
    Status,
    Webhook,
)

_labels = msgspec.json.Decoder(dict[str, str])
_webhook = msgspec.json.Decoder(Webhook)


def parse_job(job_id: str, raw: dict[Any, Any]) -> Job:
    h = JOB.decode(raw)
    return Job(
        id=job_id, state=JobState(h["state"]), version=h["version"], queue=h["queue"],
        tenant=h["tenant"], spec=codec.decode_spec(h["spec"]),
        trigger=codec.decode_trigger(h["sched"]), overlap=Overlap(h["overlap"]),
        next_ms=h.get("next_ms"), last_slot_ms=h.get("last_slot_ms"), runs=h.get("runs", 0),
        last_run_id=h.get("last_run_id"), name=h.get("name"),
        labels=_labels.decode(h["labels"]) if "labels" in h else {},
        created_ms=h.get("created_ms"), max_runs=h.get("max_runs"),
        concurrency=h.get("concurrency"), paused_until_ms=h.get("paused_until_ms"),
        unique_key=h.get("unique_key"),
        webhook=_webhook.decode(h["webhook"]) if "webhook" in h else None,
        priority=h.get("priority"))


class Queries(Part):
    async def get_job(self, job_id: str) -> Job | None:
        # on the fast path (every API read); redis-py's pipeline replies with a dict
        [raw] = await self.core.raw([("HGETALL", self.core.keys_for(job_id).job(job_id))])
        if isinstance(raw, list):
            raw = dict(zip(raw[::2], raw[1::2], strict=True))
        return parse_job(job_id, raw) if raw else None

    async def get_jobs(self, job_ids: Sequence[str]) -> list[Job | None]:
        """Several jobs in one pipelined round trip; None where a job is gone."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.core.keys_for(job_id).job(job_id))
        rows = await pipe.execute()
        return [parse_job(j, raw) if raw else None
                for j, raw in zip(job_ids, rows, strict=True)]

    async def list_jobs(self, shard: int, *, after: str = "", limit: int = 100) -> list[str]:
        """Job ids of one shard in creation order, starting after job id ``after``."""
        start = 0
        if after:
            rank = await self.redis.zrank(self.shard_keys[shard].jobs, after)
            start = 0 if rank is None else rank + 1
        ids = await self.redis.zrange(self.shard_keys[shard].jobs, start, start + limit - 1)
        return [text(i) for i in ids]

    async def get_run(self, run_id: str) -> Run | None:
        k = self.core.keys_for(job_of_run(run_id))
        raw = await self.redis.hgetall(k.run(run_id))
        return parse_run(run_id, raw) if raw else None

    async def job_runs(self, job_id: str, limit: int = 20, *, top: int | None = None
                       ) -> list[Run]:
        """The job's most recent runs still held in Redis (newest first); with ``top``,
        from run number ``top`` down."""
        k = self.core.keys_for(job_id)
        total = top if top is not None else int(await self.redis.hget(k.job(job_id), "runs")
                                                or 0)
        ids = [f"{job_id}:{n}" for n in range(total, max(0, total - limit), -1)]
        pipe = self.redis.pipeline(transaction=False)
        for rid in ids:
            pipe.hgetall(k.run(rid))
        rows = await pipe.execute()
        return [parse_run(rid, raw) for rid, raw in zip(ids, rows, strict=True) if raw]

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        out: list[DeadLetter] = []
        for k in self.shard_keys:
            for entry_id, f in await self.redis.xrevrange(k.dead, count=limit):
                out.append(parse_dead(entry_id, f))
        out.sort(key=lambda d: d.at_ms, reverse=True)
        return out[:limit]

    async def known_tasks(self) -> set[str]:
        return {text(t) for t in await self.redis.smembers(self.global_keys.tasks)}

    async def stream_lengths(self, queues: Sequence[str]) -> dict[str, int]:
        pipe = self.redis.pipeline(transaction=False)
        names = list(self.core.streams(queues)) + [k.events for k in self.shard_keys]
        for n in names:
            pipe.xlen(n)
        return dict(zip(names, await pipe.execute(), strict=True))

    async def due_count(self) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for k in self.shard_keys:
            pipe.zcard(k.due)
        return sum(await pipe.execute())

    async def queue_names(self) -> list[str]:
        """Every queue any job has used (all tenants)."""
        return sorted(text(q) for q in await self.redis.smembers(self.global_keys.queues))

    async def shard_leases(self) -> list[ShardLease]:
        """Each shard's scheduler lease: its holder and the ms left (None: unheld)."""
        pipe = self.redis.pipeline(transaction=False)
        for k in self.shard_keys:
            pipe.get(k.lease)
            pipe.pttl(k.lease)
        rows = await pipe.execute()
        return [ShardLease(shard=i, owner=text(rows[2 * i]) if rows[2 * i] else None,
                           ttl_ms=int(rows[2 * i + 1]) if rows[2 * i] else None)
                for i in range(len(self.shard_keys))]

    async def status(self, now_ms: int, lag_ms: int) -> Status:
        """Counts and liveness for `rsched status`; ``lag_ms`` is the archive lag
        (archive_feed.py computes it)."""
        queues = sorted(text(q) for q in await self.redis.smembers(self.global_keys.queues))
        lengths = await self.stream_lengths(queues)
        events = {k.events for k in self.shard_keys}
        per_queue = {q: sum(n for s, n in lengths.items()
                            if s not in events and self.core.stream_of(s)[1] == q) for q in queues}
        workers = await self.redis.zrange(self.global_keys.workers, 0, -1, withscores=True)
        schedulers = await self.redis.zrange(self.global_keys.schedulers, 0, -1, withscores=True)
        return Status(
            now_ms=now_ms, due=await self.due_count(), queues=per_queue,
            events=sum(n for s, n in lengths.items() if s in events), archive_lag_ms=lag_ms,
            workers={text(w): max(0, now_ms - int(t)) for w, t in workers},
            schedulers={text(w): max(0, now_ms - int(t)) for w, t in schedulers})

    # -- deployment-wide figures for the API's /metrics ---------------------------------
    async def job_states(self, cap: int, chunk: int = 2000) -> tuple[dict[str, int], int, int]:
        """Jobs by state over at most ``cap`` index members (short script calls of
        ``chunk``), the members examined and the members indexed over every shard."""
        pipe = self.redis.pipeline(transaction=False)
        for k in self.shard_keys:
            pipe.zcard(k.jobs)
        sizes = [int(n) for n in await pipe.execute()]
        counts: dict[str, int] = {}
        examined = 0
        for k, size in zip(self.shard_keys, sizes, strict=True):
            start = 0
            while start < size and examined < cap:
                res = await self.core.call("count_job_states", {"jobs": k.jobs}, {
                    "job_prefix": k.job_prefix, "start": start,
                    "count": min(chunk, cap - examined)})
                examined += int(res[0])
                for i in range(1, len(res), 2):
                    counts[text(res[i])] = counts.get(text(res[i]), 0) + int(res[i + 1])
                start += chunk
        return counts, examined, sum(sizes)

    async def dead_count(self) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for k in self.shard_keys:
            pipe.xlen(k.dead)
        return sum(int(n) for n in await pipe.execute())

    async def shard_owners(self) -> list[str | None]:
        """The scheduler holding each shard's lease (None: no one)."""
        owners = await self.redis.mget([k.lease for k in self.shard_keys])
        return [None if o is None else text(o) for o in owners]
