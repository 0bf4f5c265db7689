"""The Python client: schedule, update, pause, resume, cancel, run now and inspect jobs.

Owns: input validation and first-fire computation before calling the engine.
Must not: format keys or run tasks.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import msgspec

from rsched.clock import Clock
from rsched.codec import encode
from rsched.engine import Engine
from rsched.errors import DuplicateJob, JobNotFound, ValidationError
from rsched.limits import MAX_SPEC_BYTES
from rsched.models import DeadLetter, Job, JobDef, Run, Schedule, Status
from rsched.names import validate_job_id, validate_queue
from rsched.settings import Settings
from rsched.tasks import TaskRegistry
from rsched.timing import first_fire, preview, validate_schedule

log = logging.getLogger(__name__)


class Client:
    def __init__(self, engine: Engine, clock: Clock, registry: TaskRegistry | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.registry = registry

    @classmethod
    async def connect(cls, settings: Settings, registry: TaskRegistry | None = None) -> Client:
        engine = await Engine.connect(settings)
        return cls(engine, engine.clock(), registry)

    async def close(self) -> None:
        await self.engine.close()

    async def _validate(self, job: JobDef, now_ms: int) -> None:
        self._check(job, now_ms)
        self._warn_unknown({job.task}, await self._known_tasks())

    async def _known_tasks(self) -> set[str]:
        if self.registry is not None:
            return set(self.registry.names())
        return await self.engine.query.known_tasks()

    @staticmethod
    def _warn_unknown(tasks: set[str], known: set[str]) -> None:
        # Accepted (docs/decisions.md): the worker that knows it may not have started yet.
        for name in sorted(tasks - known) if known else []:
            log.warning("task %r is not registered by any worker yet (known: %s); its runs"
                        " fail with 'unknown task' on workers that lack it",
                        name, ", ".join(sorted(known)[:10]))

    @staticmethod
    def _check(job: JobDef, now_ms: int) -> None:
        try:  # Structs built in Python skip their constraints; a round trip applies them
            msgspec.convert(msgspec.to_builtins(job), JobDef)
        except msgspec.ValidationError as exc:
            raise ValidationError(f"invalid job: {exc}") from exc
        if job.id is not None:
            validate_job_id(job.id)
        validate_queue(job.queue)
        size = len(encode(job.spec()))
        if size > MAX_SPEC_BYTES:
            raise ValidationError(f"job {job.task!r}: args, kwargs and task name encode to"
                                  f" {size} bytes; at most {MAX_SPEC_BYTES} (1 MiB)")
        validate_schedule(job.schedule, now_ms)

    async def schedule(self, job: JobDef) -> str:
        """Create a job; returns its id. Raises DuplicateJob if the id exists."""
        now = await self.clock.now_ms()
        await self._validate(job, now)
        job_id = job.id or uuid.uuid4().hex
        await self.engine.jobs.schedule_job(job_id, job, now_ms=now,
                                       next_ms=first_fire(job.schedule, now), expect_version=0)
        return job_id

    async def schedule_many(self, jobs: Sequence[JobDef], *, chunk: int = 1000) -> list[str]:
        """Create many jobs in pipelined round trips; returns their ids in order. Every job
        is validated before anything is written. Each job is created atomically, the batch
        is not: if some ids already exist, the others are still created and DuplicateJob
        names the first existing one."""
        now = await self.clock.now_ms()
        for job in jobs:
            self._check(job, now)
        self._warn_unknown({job.task for job in jobs}, await self._known_tasks())
        ids = [job.id or uuid.uuid4().hex for job in jobs]
        codes = await self.engine.jobs.schedule_many(
            [(job_id, job, first_fire(job.schedule, now)) for job_id, job in zip(ids, jobs,
                                                                                strict=True)],
            now_ms=now, chunk=chunk)
        dup = [job_id for job_id, code in zip(ids, codes, strict=True) if code == -4]
        if dup:
            raise DuplicateJob(f"schedule_many: {len(dup)} of {len(ids)} job ids already exist "
                               f"(first {dup[0]!r}); the others were created",
                               script="schedule_job", job_id=dup[0])
        return ids

    async def update(self, job_id: str, job: JobDef, version: int | None = None) -> int:
        """Replace a job's definition; with ``version``, only if it is still that version.
        The new schedule takes effect at once. Returns the new version."""
        now = await self.clock.now_ms()
        await self._validate(job, now)
        if version is None:
            current = await self.get(job_id)
            version = current.version
        return await self.engine.jobs.schedule_job(job_id, job, now_ms=now,
                                              next_ms=first_fire(job.schedule, now),
                                              expect_version=version)

    async def get(self, job_id: str) -> Job:
        job = await self.engine.query.get_job(job_id)
        if job is None:
            raise JobNotFound(f"job {job_id!r} not found", job_id=job_id)
        return job

    async def list_jobs(self, *, after: str = "", limit: int = 100) -> list[str]:
        """Job ids, shard by shard in creation order; pass the last id as ``after``."""
        out: list[str] = []
        start = self.engine.keys_for(after).shard if after else 0
        for shard in range(start, self.engine.shards):
            out += await self.engine.query.list_jobs(shard, after=after if shard == start else "",
                                               limit=limit - len(out))
            if len(out) >= limit:
                break
        return out

    async def pause(self, job_id: str) -> None:
        await self.engine.jobs.pause_job(job_id, await self.clock.now_ms())

    async def resume(self, job_id: str) -> None:
        await self.engine.jobs.resume_job(job_id, await self.clock.now_ms())

    async def cancel(self, job_id: str) -> None:
        await self.engine.jobs.cancel_job(job_id, await self.clock.now_ms())

    async def run_now(self, job_id: str) -> str:
        """Enqueue an extra run at once; returns its run id."""
        return await self.engine.jobs.run_now(job_id, await self.clock.now_ms())

    async def runs(self, job_id: str, limit: int = 20) -> list[Run]:
        return await self.engine.query.job_runs(job_id, limit)

    async def run(self, run_id: str) -> Run | None:
        return await self.engine.query.get_run(run_id)

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return await self.engine.query.dead_letters(limit)

    async def status(self) -> Status:
        """Due jobs, stream lengths, archive lag, live workers and schedulers."""
        now = await self.clock.now_ms()
        return await self.engine.query.status(now, await self.engine.feed.events_lag_ms(now))

    async def preview(self, schedule: Schedule, count: int = 5) -> list[int]:
        now = await self.clock.now_ms()
        validate_schedule(schedule, now)
        return preview(schedule, now, count)
