"""Transitions of jobs: create, change, cancel, pause, resume, run now.

Owns: one engine method per job script (schedule_job, cancel_job, pause_job, resume_job,
run_now), each one atomic script call. Must not: compute fire times or validate
schedules (the client does); callers pass ``now_ms`` and the first fire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import msgspec

from rsched import codec
from rsched.engine.core import Core, Part, Recent
from rsched.engine.queries import parse_job
from rsched.engine.types import text
from rsched.errors import Code, raise_for_code
from rsched.models import Job, JobDef
from rsched.names import validate_job_id, validate_queue
from rsched.timing import jitter_offset_ms

_json = msgspec.json.Encoder()  # labels and webhook are stored as JSON (queries.py reads them)
ITEM_ARGS = 17  # arguments per job in schedule_job's items (the script's header)
TRIGGERS_KEPT = 4096  # encoded Trigger blobs kept per process (one per distinct schedule)


def check_job(job_id: str, d: JobDef) -> None:
    validate_job_id(job_id)
    validate_queue(d.queue)

def due_ms(job_id: str, d: JobDef, slot_ms: int) -> int:
    """The due score of a slot: the slot itself, later by the job's jitter offset."""
    return slot_ms + jitter_offset_ms(job_id, slot_ms, round(d.jitter_s * 1000))


async def _collect(out: list[int], start: int, where: list[list[int]],
                   sent: asyncio.Future[Sequence[Any]]) -> None:
    """Put each call's per-job codes at their jobs' places in ``out`` (chunk at start)."""
    for positions, codes in zip(where, await sent, strict=True):
        for pos, code in zip(positions, codes, strict=True):
            out[start + pos] = int(code)


class Jobs(Part):
    def __init__(self, core: Core) -> None:
        super().__init__(core)
        self._queues_added = Recent()  # queue names added to the global set lately
        self._triggers: dict[tuple[Any, ...], bytes] = {}  # see _trigger_blob

    def _queue_commands(self, queues: set[str]) -> list[tuple[str, ...]]:
        """SADD of the queue names to the global set, each at most every NOTE_S per
        process (the set only feeds listings); [] when all were added lately."""
        new = self._queues_added.due(sorted(queues))
        return [("SADD", self.global_keys.queues, *new)] if new else []

    async def _note_queues(self, queues: set[str]) -> None:
        cmds = self._queue_commands(queues)
        try:
            await self.core.raw(cmds)
        except BaseException:
            self._queues_added.undo(queues)
            raise

    def _trigger_blob(self, d: JobDef) -> bytes:
        """The encoded Trigger, kept per identical schedule and firing options (the jobs
        of a bulk create or a recurring template usually share one)."""
        key = (d.schedule, d.misfire, d.grace_s, d.catch_up_max, d.jitter_s)
        try:
            blob = self._triggers.get(key)
        except TypeError:  # an unhashable (invalid) field: no caching
            return codec.encode(d.trigger())
        if blob is None:
            blob = codec.encode(d.trigger())
            if len(self._triggers) >= TRIGGERS_KEPT:
                self._triggers.clear()
            self._triggers[key] = blob
        return blob

    def _item(self, job_id: str, d: JobDef, next_ms: int | None, expect_version: int
              ) -> list[Any]:
        """One job's group of schedule_job's ``items`` (the header's order); the caller
        has checked the id and queue (check_job)."""
        return [job_id, expect_version,
                -1 if next_ms is None else due_ms(job_id, d, next_ms),
                "" if next_ms is None else next_ms,
                codec.encode(d.spec()), self._trigger_blob(d), d.queue, d.tenant,
                d.retry.max_attempts, d.overlap.value,
                "" if d.max_runs is None else d.max_runs,
                "" if d.concurrency is None else d.concurrency,
                "" if d.priority is None else d.priority,
                d.name or "", _json.encode(d.labels) if d.labels else "",
                d.unique_key or "", "" if d.webhook is None else _json.encode(d.webhook)]

    def _schedule_args(self, shard: int, now_ms: int, items: list[Any]
                       ) -> tuple[dict[str, str], dict[str, Any]]:
        """schedule_job's keys and arguments for jobs of one shard (``items``: their
        groups, concatenated)."""
        k = self.shard_keys[shard]
        return {"due": k.due, "events": k.events, "jobs": k.jobs}, {
            "now_ms": now_ms, "job_prefix": k.job_prefix, "maxlen": self.core.maxlen,
            "wake": self.global_keys.wake_channel, "shard": shard, "items": items}

    def _one(self, job_id: str, d: JobDef, now_ms: int, next_ms: int | None,
             expect_version: int) -> tuple[dict[str, str], dict[str, Any]]:
        check_job(job_id, d)
        return self._schedule_args(self.core.keys_for(job_id).shard, now_ms,
                                   self._item(job_id, d, next_ms, expect_version))

    async def schedule_job(self, job_id: str, d: JobDef, *, now_ms: int, next_ms: int | None,
                           expect_version: int) -> int:
        [ver] = await self.core.call("schedule_job",
                                     *self._one(job_id, d, now_ms, next_ms, expect_version))
        raise_for_code(ver, script="schedule_job", job_id=job_id)
        await self._note_queues({d.queue})
        await self.core.note_levels([d])
        return int(ver)

    async def create_job(self, job_id: str, d: JobDef, *, now_ms: int, next_ms: int | None,
                         before: list[tuple[Any, ...]], read_back: bool = False
                         ) -> tuple[int, Job | None]:
        """Create a job (schedule_job, version 0) in ONE round trip: ``before`` (the
        tenant index write: a listing skips an entry whose job is missing), the queue
        notes this process has not made lately and the job's priority level are pipelined
        ahead of the script; with ``read_back`` the job is read (HGETALL) right after it.
        Raises like schedule_job; returns (version, the job or None)."""
        keys, args = self._one(job_id, d, now_ms, next_ms, 0)
        notes = self._queue_commands({d.queue})
        then = [("HGETALL", self.core.keys_for(job_id).job(job_id))] if read_back else []
        try:
            reply, after = await self.core.call_after(
                [*before, *notes, *self.core.level_commands([d])], "schedule_job", keys, args,
                then)
        except BaseException:
            if notes:
                self._queues_added.undo([d.queue])
            raise
        ver = reply[0]
        raise_for_code(ver, script="schedule_job", job_id=job_id)
        raw = after[0] if read_back else None
        if isinstance(raw, list):  # the fast path's flat reply
            raw = dict(zip(raw[::2], raw[1::2], strict=True))
        return int(ver), (parse_job(job_id, raw) if raw else None)

    def _chunk_calls(self, jobs: Sequence[tuple[str, JobDef, int | None]], now_ms: int
                     ) -> tuple[list[tuple[dict[str, str], dict[str, Any]]], list[list[int]]]:
        """One schedule_job call per shard of a chunk, and which jobs (by position in the
        chunk) each call's codes belong to."""
        by_shard: dict[int, tuple[list[int], list[Any]]] = {}
        shard_of = self.core.keys_for
        for pos, (job_id, d, nxt) in enumerate(jobs):
            where, items = by_shard.setdefault(shard_of(job_id).shard, ([], []))
            where.append(pos)
            items += self._item(job_id, d, nxt, 0)
        return ([self._schedule_args(s, now_ms, items) for s, (_, items) in by_shard.items()],
                [where for where, _ in by_shard.values()])

    async def _send_chunk(self, calls: list[tuple[dict[str, str], dict[str, Any]]]
                          ) -> Sequence[Any]:
        def build(pipe: Any) -> None:
            for keys, args in calls:
                self.core.scripts.queue(pipe, "schedule_job", keys, args)

        return await self.core.scripts.execute(self.redis, build)

    async def schedule_many(self, jobs: Sequence[tuple[str, JobDef, int | None]], *,
                            now_ms: int, chunk: int = 1000,
                            before: Sequence[tuple[Any, ...]] = ()) -> list[int]:
        """Create jobs (id, definition, first fire): per ``chunk`` jobs, one schedule_job
        call per shard, pipelined in one round trip, after one round trip of ``before``
        (the tenant index), the queue notes and the priority levels. Each job is created
        atomically, the batch is not: returns one code per job, its version (1) or -4
        when the id already exists."""
        for job_id, d, _ in jobs:  # bad input fails before anything is written
            check_job(job_id, d)
        queues = {d.queue for _, d, _ in jobs}
        try:
            await self.core.raw([*before, *self._queue_commands(queues),
                                 *self.core.level_commands(d for _, d, _ in jobs)])
        except BaseException:
            self._queues_added.undo(queues)
            raise
        out: list[int] = [0] * len(jobs)
        sent: tuple[int, list[list[int]], asyncio.Future[Sequence[Any]]] | None = None
        for i in range(0, len(jobs), chunk):
            calls, where = self._chunk_calls(jobs[i:i + chunk], now_ms)
            # Redis runs this chunk while the next one is built: one chunk in flight.
            nxt_sent = (i, where, asyncio.ensure_future(self._send_chunk(calls)))
            try:
                await asyncio.sleep(0)  # let it write its commands
                if sent is not None:
                    await _collect(out, *sent)
            except BaseException:
                nxt_sent[2].cancel()
                await asyncio.gather(nxt_sent[2], return_exceptions=True)
                raise
            sent = nxt_sent
        if sent is not None:
            await _collect(out, *sent)
        return out

    async def _job_op(self, name: str, job_id: str, keys: dict[str, str],
                      args: dict[str, Any]) -> Any:
        k = self.core.keys_for(job_id)
        res = await self.core.call(name, keys, {"now_ms": args.pop("now_ms"),
                                                "job_prefix": k.job_prefix, "job_id": job_id,
                                                "maxlen": self.core.maxlen, **args})
        if isinstance(res, int):
            # a refusal names the state found (read after it: for the message only)
            refused = res == Code.WRONG_STATE
            state = await self.redis.hget(k.job(job_id), "state") if refused else None
            raise_for_code(res, script=name, job_id=job_id, state=text(state or b""))
        return res

    async def cancel_job(self, job_id: str, now_ms: int) -> None:
        k = self.core.keys_for(job_id)
        await self._job_op("cancel_job", job_id, {"due": k.due, "events": k.events,
                                                   "jobs": k.jobs}, {
            "now_ms": now_ms, "run_prefix": k.run_prefix,
            "channel": self.global_keys.cancel_channel,
            "done_ttl_ms": self.core.done_ttl_ms})

    async def pause_job(self, job_id: str, now_ms: int, until_ms: int | None = None) -> None:
        """Pause a job; with ``until_ms``, it resumes by itself at that instant."""
        k = self.core.keys_for(job_id)
        await self._job_op("pause_job", job_id, {"due": k.due, "events": k.events}, {
            "now_ms": now_ms, "until_ms": -1 if until_ms is None else until_ms,
            "wake": self.global_keys.wake_channel, "shard": k.shard})

    async def resume_job(self, job_id: str, now_ms: int) -> None:
        k = self.core.keys_for(job_id)
        await self._job_op("resume_job", job_id, {"due": k.due, "events": k.events}, {
            "now_ms": now_ms, "wake": self.global_keys.wake_channel, "shard": k.shard})

    async def run_now(self, job_id: str, now_ms: int) -> str:
        k = self.core.keys_for(job_id)
        return text(await self._job_op("run_now", job_id, {"events": k.events}, {
            "now_ms": now_ms, "run_prefix": k.run_prefix, "queue_prefix": k.queue_prefix}))
