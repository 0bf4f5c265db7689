"""Tenants' view of the engine: their job index, unique names, queues, dead letters.

Owns: the per-tenant listing index, name map and unique keys (claim_name.lua), the
queues a tenant uses and their figures, cancelling one run (cancel_run.lua), and retrying
or purging dead letters. Must not: decide who may see what (api/ checks the tenant of
every job, run and dead letter it hands out) or validate job definitions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
from redis.exceptions import ResponseError

from rsched.engine.core import Core, Part, Recent
from rsched.engine.keys import WORKER_GROUP
from rsched.engine.types import job_of_run, parse_dead, split_id, text
from rsched.errors import Code, raise_for_code
from rsched.models import DeadLetter

RATE_WINDOW_MS = 60_000  # queue rate: entries added over the last minute


class QueueFigures(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    depth: int  # entries in the queue's streams (unread, pending or not yet trimmed)
    pending: int  # delivered to a worker, not yet acked
    oldest_age_ms: int | None  # age of the oldest pending entry
    per_min: int  # entries added in the last minute


def index_member(created_ms: int, job_id: str) -> str:
    return f"{created_ms:013d}:{job_id}"


def member_job(member: str) -> str:
    return member.partition(":")[2]



class Catalog(Part):
    def __init__(self, core: Core) -> None:
        super().__init__(core)
        self._queues_added = Recent()  # (tenant, queue) added to the tenant's queue set lately

    def index_commands(self, tenant: str, job_id: str, created_ms: int, queue: str
                       ) -> list[tuple[Any, ...]]:
        """The commands adding a job to its tenant's listing, to send before the job is
        created (a listing drops entries whose job is gone only once they are old, see
        ``forget``); the queue is added to the tenant's queue set at most every NOTE_S."""
        t = self.core.tenant_keys(tenant)
        cmds: list[tuple[Any, ...]] = [("ZADD", t.jobs, 0, index_member(created_ms, job_id))]
        if self._queues_added.due([(tenant, queue)]):
            cmds.append(("SADD", t.queues, queue))
        return cmds

    def index_failed(self, pairs: Iterable[tuple[str, str]]) -> None:
        """The index commands of these (tenant, queue) pairs may not have run: their
        queues are added again next time."""
        self._queues_added.undo(pairs)

    def index_many(self, created_ms: int, jobs: Sequence[tuple[str, str, str]]
                   ) -> list[tuple[Any, ...]]:
        """Like index_commands for (tenant, job id, queue) triples: one ZADD per tenant."""
        members: dict[str, list[Any]] = {}
        for tenant, job_id, _ in jobs:
            members.setdefault(tenant, []).extend((0, index_member(created_ms, job_id)))
        cmds: list[tuple[Any, ...]] = [("ZADD", self.core.tenant_keys(t).jobs, *m)
                                       for t, m in members.items()]
        for tenant, queue in self._queues_added.due(sorted({(t, q) for t, _, q in jobs})):
            cmds.append(("SADD", self.core.tenant_keys(tenant).queues, queue))
        return cmds

    async def scan_jobs(self, tenant: str, after: str, count: int) -> list[str]:
        """Index members after ``after`` (a member; "" = from the start), oldest first."""
        start = f"({after}" if after else "-"
        rows = await self.redis.zrangebylex(self.core.tenant_keys(tenant).jobs, start, "+",
                                            start=0, num=count)
        return [text(r) for r in rows]

    async def forget(self, tenant: str, members: Iterable[str]) -> None:
        members = list(members)
        if members:
            await self.redis.zrem(self.core.tenant_keys(tenant).jobs, *members)

    async def name_holder(self, tenant: str, name: str) -> str | None:
        holder = await self.redis.hget(self.core.tenant_keys(tenant).names, name)
        return None if holder is None else text(holder)

    async def claim_name(self, tenant: str, name: str, expect: str | None,
                         job_id: str | None) -> bool:
        """Compare-and-set the holder of ``name`` (``job_id`` None releases it)."""
        code = await self.core.call("claim_name", {"names": self.core.tenant_keys(tenant).names},
                                    {"name": name, "expect": expect or "",
                                     "job_id": job_id or ""})
        return int(code) == Code.DONE

    async def unique_holder(self, tenant: str, key: str) -> str | None:
        """The claim on a job's unique key: "<job id> <claimed ms>", or None."""
        holder = await self.redis.hget(self.core.tenant_keys(tenant).unique, key)
        return None if holder is None else text(holder)

    async def claim_unique(self, tenant: str, key: str, expect: str | None,
                           claim: str | None) -> bool:
        """Compare-and-set a unique key's claim (claim_name.lua on the tenant's unique
        keys; ``claim`` None releases it)."""
        code = await self.core.call("claim_name", {"names": self.core.tenant_keys(tenant).unique},
                                    {"name": key, "expect": expect or "",
                                     "job_id": claim or ""})
        return int(code) == Code.DONE

    async def restore_entries(self, tenant: str, job_id: str, *, created_ms: int, queue: str,
                              name: str | None, unique_key: str | None, named: bool) -> bool:
        """A job restored from the archive (rebuild) back in its tenant's keys, which are
        in another slot than the job's: its listing entry and queue, its unique key's
        claim and, when ``named`` (not cancelled), its name; a claim only where it is
        free (a job created since Redis lost its data keeps what it took). False: the
        name was taken by another job."""
        cmds = self.index_commands(tenant, job_id, created_ms, queue)
        try:
            await self.core.raw(cmds)
        except BaseException:
            self.index_failed([(tenant, queue)])
            raise
        if unique_key:
            await self.claim_unique(tenant, unique_key, None, f"{job_id} {created_ms}")
        return not (name and named) or await self.claim_name(tenant, name, None, job_id)

    async def tenant_queues(self, tenant: str) -> list[str]:
        queues = await self.redis.smembers(self.core.tenant_keys(tenant).queues)
        return sorted(text(q) for q in queues)

    async def queue_figures(self, queues: Sequence[str], now_ms: int) -> list[QueueFigures]:
        return [await self._figures(q, now_ms) for q in queues]

    async def _figures(self, queue: str, now_ms: int) -> QueueFigures:
        streams = [k.queue(queue) for k in self.core.shard_keys]
        pipe = self.redis.pipeline(transaction=False)
        for s in streams:
            pipe.xlen(s)
            pipe.xpending(s, WORKER_GROUP)
            pipe.xrange(s, min=f"{now_ms - RATE_WINDOW_MS}-0", max="+", count=10_000)
        replies = await pipe.execute(raise_on_error=False)
        depth = pending = per_min = 0
        oldest: int | None = None
        for i in range(0, len(replies), 3):
            length, pend, recent = replies[i:i + 3]
            depth += int(length)
            per_min += len(recent)
            if isinstance(pend, ResponseError) or not pend["pending"]:
                continue  # no group yet: nothing delivered
            pending += int(pend["pending"])
            ms = split_id(text(pend["min"]))[0]
            oldest = ms if oldest is None else min(oldest, ms)
        return QueueFigures(name=queue, depth=depth, pending=pending, per_min=per_min,
                            oldest_age_ms=None if oldest is None else max(0, now_ms - oldest))

    async def cancel_run(self, run_id: str, now_ms: int) -> int:
        """1 cancelled while waiting, 2 running (its worker is told to stop)."""
        job_id = job_of_run(run_id)
        k = self.core.keys_for(job_id)
        code = int(await self.core.call("cancel_run", {"due": k.due, "events": k.events}, {
            "now_ms": now_ms, "run_prefix": k.run_prefix, "run_id": run_id,
            "channel": self.core.global_keys.cancel_channel, "maxlen": self.core.maxlen}))
        raise_for_code(code, script="cancel_run", job_id=job_id)
        return code

    async def run_tenants(self, run_ids: Sequence[str]) -> list[str | None]:
        """Each run's tenant from its run hash, else its job's; None when both are gone."""
        pipe = self.redis.pipeline(transaction=False)
        for rid in run_ids:
            k = self.core.keys_for(job_of_run(rid))
            pipe.hget(k.run(rid), "tenant")
            pipe.hget(k.job(job_of_run(rid)), "tenant")
        rows = await pipe.execute()
        return [text(rows[i] or rows[i + 1]) if (rows[i] or rows[i + 1]) else None
                for i in range(0, len(rows), 2)]

    async def dead_page(self, before: str, scan: int) -> tuple[list[DeadLetter], str | None]:
        """Up to ``scan`` dead letters older than entry id ``before`` ("" = newest), newest
        first over every shard; and the cursor for the next page (None: no more)."""
        pipe = self.redis.pipeline(transaction=False)
        for k in self.core.shard_keys:
            pipe.xrevrange(k.dead, max=f"({before}" if before else "+", min="-", count=scan)
        replies = await pipe.execute()
        merged = [parse_dead(e, f) for rows in replies for e, f in rows]
        merged.sort(key=lambda d: split_id(d.entry_id), reverse=True)
        page = merged[:scan]
        more = len(merged) > scan or any(len(rows) == scan for rows in replies)
        return page, (page[-1].entry_id if more and page else None)

    async def delete_dead(self, letters: Sequence[DeadLetter]) -> int:
        if not letters:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for d in letters:
            pipe.xdel(self.core.keys_for(d.job_id).dead, d.entry_id)
        return sum(int(n) for n in await pipe.execute())

    async def get_dead(self, job_id: str, entry_id: str) -> DeadLetter | None:
        rows = await self.redis.xrange(self.core.keys_for(job_id).dead, entry_id, entry_id)
        return parse_dead(*rows[0]) if rows else None
