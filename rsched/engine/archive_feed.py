"""The engine's side of the archive: events out to archivers, archived state back in.

Owns: the archivers' consumer group over the events streams (read, ack, trim, take over,
lag) and restoring jobs and runs lost from Redis (rebuild). Must not: write PostgreSQL or
decide what to restore (archiver.py and rebuild.py do).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from rsched.engine.core import Part
from rsched.engine.keys import ARCHIVER_GROUP
from rsched.engine.types import job_of_run, pairs, split_id, text
from rsched.errors import Code
from rsched.names import split_lane


class _Lane(NamedTuple):
    """What Core.level_commands reads of a job: its queue and explicit priority."""

    queue: str
    priority: int | None


def _opt(value: int | None) -> int | str:
    return "" if value is None else value


class ArchiveFeed(Part):
    async def ensure_event_groups(self) -> None:
        for k in self.shard_keys:
            await self.core.ensure_group(k.events, ARCHIVER_GROUP)

    async def read_events(self, consumer: str, count: int, block_ms: int | None,
                          pending: bool = False) -> list[tuple[int, str, dict[bytes, bytes]]]:
        """Events of every shard as (shard, entry id, raw fields); ``pending`` re-reads this
        consumer's unacked ones (after a crash) instead of new ones."""
        streams = {k.events: ("0" if pending else ">") for k in self.shard_keys}
        shard_of_stream = {k.events.encode(): k.shard for k in self.shard_keys}
        if block_ms is None and hasattr(self.redis, "execute_many"):
            # the archiver's bulk path: the flat hiredis reply, one dict per entry
            [reply] = await self.core.raw([("XREADGROUP", "GROUP", ARCHIVER_GROUP, consumer,
                                        "COUNT", count, "STREAMS", *streams,
                                        *streams.values())])
            return [(shard_of_stream[stream], eid.decode(), pairs(f))
                    for stream, entries in reply or [] for eid, f in entries]
        reply = await self.redis.xreadgroup(ARCHIVER_GROUP, consumer, streams, count=count,
                                            block=block_ms)
        # an entry trimmed while pending comes back without fields: an empty event
        return [(shard_of_stream[stream if isinstance(stream, bytes) else stream.encode()],
                 text(eid), f or {}) for stream, entries in reply or [] for eid, f in entries]

    async def ack_events(self, ids: Sequence[tuple[int, str]]) -> None:
        by_shard: dict[int, list[str]] = {}
        for shard, eid in ids:
            by_shard.setdefault(shard, []).append(eid)
        await self.core.raw([("XACK", self.shard_keys[shard].events, ARCHIVER_GROUP, *eids)
                         for shard, eids in by_shard.items()])

    async def trim_events(self) -> int:
        """Drop events every group (the archivers) has acked."""
        return sum([await self.core.trim_acked(k.events) for k in self.shard_keys])

    async def claim_events(self, consumer: str, min_idle_ms: int,
                           count: int) -> list[tuple[int, str, dict[bytes, bytes]]]:
        """Take over events a dead archiver read but never acked."""
        out: list[tuple[int, str, dict[bytes, bytes]]] = []
        for k in self.shard_keys:
            reply = await self.redis.xautoclaim(k.events, ARCHIVER_GROUP, consumer, min_idle_ms,
                                                "0-0", count=count)
            out += [(k.shard, text(eid), f)
                    for eid, f in reply[1] if f]
        return out

    async def events_lag_ms(self, now_ms: int) -> int:
        """Age of the oldest event not yet archived (0 when all are)."""
        oldest = [await self.core.oldest_unacked(k.events) for k in self.shard_keys]
        ages = []
        for k, floor in zip(self.shard_keys, oldest, strict=True):
            if floor is None:
                continue
            first = await self.redis.xrange(k.events, min=floor, count=1)
            if first:
                ages.append(max(0, now_ms - split_id(text(first[0][0]))[0]))
        return max(ages, default=0)

    async def restore_job(self, job_id: str, *, state: str, next_ms: int | None, version: int,
                          spec: bytes, sched: bytes, queue: str, tenant: str, max_att: int,
                          overlap: str, runs: int, last_ms: int | None,
                          created_ms: int, name: str | None = None, labels: str | None = None,
                          unique_key: str | None = None, webhook: str | None = None,
                          max_runs: int | None = None, concurrency: int | None = None,
                          priority: int | None = None) -> bool:
        """Recreate a job lost from Redis; False when it already exists (untouched).
        ``labels`` and ``webhook`` are JSON text, as archived. A priority's level goes
        into its queue's levels set as a create puts it (workers read only the lanes
        listed there), also when the job already exists (the set may be the part lost)."""
        k = self.core.keys_for(job_id)
        await self.core.note_levels([_Lane(queue, priority)])  # before its runs can fire
        res = await self.core.call("restore_job", {"due": k.due, "jobs": k.jobs}, {
            "job_prefix": k.job_prefix, "job_id": job_id, "state": state,
            "next_ms": -1 if next_ms is None else next_ms, "version": version, "spec": spec,
            "sched": sched, "queue": queue, "tenant": tenant, "max_att": max_att,
            "overlap": overlap, "runs": runs, "last_ms": -1 if last_ms is None else last_ms,
            "created_ms": created_ms, "done_ttl_ms": self.core.done_ttl_ms,
            "name": name or "", "labels": labels or "", "ukey": unique_key or "",
            "hook": webhook or "", "max_runs": _opt(max_runs), "conc": _opt(concurrency),
            "prio": _opt(priority)})
        return int(res) == Code.DONE

    async def restore_run(self, run_id: str, *, queue: str, tenant: str, attempt: int,
                          max_att: int, slot_ms: int, due_ms: int) -> bool:
        """Re-queue an unfinished run lost from Redis as a retry due at ``due_ms``;
        ``queue`` is the run's lane, whose level (if it has one) is registered."""
        job_id = job_of_run(run_id)
        await self.core.note_levels([_Lane(*split_lane(queue))])
        k = self.core.keys_for(job_id)
        res = await self.core.call("restore_run", {"due": k.due}, {
            "run_prefix": k.run_prefix, "run_id": run_id, "job_id": job_id, "queue": queue,
            "tenant": tenant, "attempt": attempt, "max_att": max_att, "slot_ms": slot_ms,
            "due_ms": due_ms})
        return int(res) == Code.DONE
