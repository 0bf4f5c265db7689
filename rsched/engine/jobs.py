"""Transitions of jobs: create, change, cancel, pause, resume, run now.

Owns: one engine method per job script (schedule_job, cancel_job, pause_job, resume_job,
run_now), each one atomic script call. Must not: compute fire times or validate
schedules (the client does); callers pass ``now_ms`` and the first fire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from rsched import codec
from rsched.engine.core import Core, Part, Recent
from rsched.engine.queries import parse_job
from rsched.engine.types import text
from rsched.errors import Code, raise_for_code
from rsched.models import Job, JobDef
from rsched.names import validate_job_id, validate_queue
from rsched.timing import jitter_offset_ms


def check_job(job_id: str, d: JobDef) -> None:
    validate_job_id(job_id)
    validate_queue(d.queue)

def due_ms(job_id: str, d: JobDef, slot_ms: int) -> int:
    """The due score of a slot: the slot itself, later by the job's jitter offset."""
    return slot_ms + jitter_offset_ms(job_id, slot_ms, round(d.jitter_s * 1000))


def _controls(job_id: str, d: JobDef, next_ms: int | None) -> dict[str, Any]:
    """schedule_job's arguments for the execution controls ('' = not used)."""
    return {"next_slot": "" if next_ms is None else next_ms,
            "max_runs": "" if d.max_runs is None else d.max_runs,
            "conc": "" if d.concurrency is None else d.concurrency,
            "prio": "" if d.priority is None else d.priority}


class Jobs(Part):
    def __init__(self, core: Core) -> None:
        super().__init__(core)
        self._queues_added = Recent()  # queue names added to the global set lately

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

    def _schedule_args(self, job_id: str, d: JobDef, now_ms: int, next_ms: int | None,
                       expect_version: int) -> tuple[dict[str, str], dict[str, Any]]:
        check_job(job_id, d)
        k = self.core.keys_for(job_id)
        return {"due": k.due, "events": k.events, "jobs": k.jobs}, {
            "now_ms": now_ms, "job_prefix": k.job_prefix, "job_id": job_id,
            "next_ms": -1 if next_ms is None else due_ms(job_id, d, next_ms),
            "expect_ver": expect_version,
            "spec": codec.encode(d.spec()), "sched": codec.encode(d.trigger()),
            "queue": d.queue, "tenant": d.tenant, "max_att": d.retry.max_attempts,
            "overlap": d.overlap.value, "maxlen": self.core.maxlen,
            "wake": self.global_keys.wake_channel,
            "shard": k.shard, **_controls(job_id, d, next_ms)}

    async def schedule_job(self, job_id: str, d: JobDef, *, now_ms: int, next_ms: int | None,
                           expect_version: int) -> int:
        ver = await self.core.call("schedule_job",
                               *self._schedule_args(job_id, d, now_ms, next_ms, expect_version))
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
        keys, args = self._schedule_args(job_id, d, now_ms, next_ms, 0)
        notes = self._queue_commands({d.queue})
        then = [("HGETALL", self.core.keys_for(job_id).job(job_id))] if read_back else []
        try:
            ver, after = await self.core.call_after(
                [*before, *notes, *self.core.level_commands([d])], "schedule_job", keys, args,
                then)
        except BaseException:
            if notes:
                self._queues_added.undo([d.queue])
            raise
        raise_for_code(ver, script="schedule_job", job_id=job_id)
        raw = after[0] if read_back else None
        if isinstance(raw, list):  # the fast path's flat reply
            raw = dict(zip(raw[::2], raw[1::2], strict=True))
        return int(ver), (parse_job(job_id, raw) if raw else None)

    async def schedule_many(self, jobs: Sequence[tuple[str, JobDef, int | None]], *,
                            now_ms: int, chunk: int = 1000,
                            before: Sequence[tuple[Any, ...]] = ()) -> list[int]:
        """Create jobs (id, definition, first fire) in pipelined round trips of ``chunk``
        schedule_job calls, after one round trip of ``before`` (the tenant index), the
        queue notes and the priority levels. Each job is created atomically, the batch is
        not: returns one code per job, its version (1) or -4 when the id already exists."""
        for job_id, d, _ in jobs:  # bad input fails before anything is written
            check_job(job_id, d)
        queues = {d.queue for _, d, _ in jobs}
        try:
            await self.core.raw([*before, *self._queue_commands(queues),
                                 *self.core.level_commands(d for _, d, _ in jobs)])
        except BaseException:
            self._queues_added.undo(queues)
            raise
        out: list[int] = []
        sent: asyncio.Future[Sequence[Any]] | None = None
        for i in range(0, len(jobs), chunk):
            calls = [self._schedule_args(job_id, d, now_ms, nxt, 0)
                     for job_id, d, nxt in jobs[i:i + chunk]]

            def build(pipe: Any, calls: list[tuple[dict[str, str], dict[str, Any]]] = calls
                      ) -> None:
                for keys, args in calls:
                    self.core.scripts.queue(pipe, "schedule_job", keys, args)

            # Redis runs this chunk while the next one is built: one chunk in flight.
            nxt_sent = asyncio.ensure_future(self.core.scripts.execute(self.redis, build))
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
