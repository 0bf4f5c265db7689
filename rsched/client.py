"""The Python client: schedule, update, pause, resume, cancel, run now and inspect jobs.

Owns: input validation and first-fire computation before calling the engine.
Must not: format keys or run tasks.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence

import msgspec

from rsched.claims import Claims
from rsched.clock import Clock, SyncedClock
from rsched.codec import encode
from rsched.engine import Engine
from rsched.engine.catalog import QueueFigures, index_member, member_job
from rsched.errors import Code, DuplicateJob, InvalidTransition, JobNotFound, ValidationError
from rsched.limits import MAX_SPEC_BYTES, MAX_TIME_MS
from rsched.models import (
    DeadLetter,
    Job,
    JobDef,
    JobState,
    QueueLimits,
    Run,
    Schedule,
    ShardLease,
    Status,
)
from rsched.names import (
    validate_job_id,
    validate_job_name,
    validate_labels,
    validate_queue,
    validate_tenant,
    validate_webhook_url,
)
from rsched.settings import Settings
from rsched.task_kinds import is_shell_queue
from rsched.tasks import TaskRegistry
from rsched.timing import first_fire, preview, validate_schedule

log = logging.getLogger(__name__)
DEAD_ID = re.compile(r"^(\d{1,16}-\d{1,16})~(.+)$")  # "<stream entry id>~<job id>"
DEAD_SCAN_MAX = 100_000  # dead letters one filtered listing examines at most
KNOWN_TASKS_S = 5.0  # how long the registered task names are reused for the warning


class Client:
    def __init__(self, engine: Engine, clock: Clock, registry: TaskRegistry | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.registry = registry
        self._claims = Claims(engine)
        self._known: tuple[float, set[str]] | None = None  # (monotonic read time, names)

    @classmethod
    async def connect(cls, settings: Settings, registry: TaskRegistry | None = None) -> Client:
        engine = await Engine.connect(settings)
        # Redis time without a TIME round trip per call (as the API's client does)
        return cls(engine, SyncedClock(engine.clock()), registry)

    async def close(self) -> None:
        await self.engine.close()

    async def _validate(self, job: JobDef, now_ms: int) -> None:
        self._check(job, now_ms)
        if job.task:
            self._warn_unknown({job.task}, await self._known_tasks())

    async def _known_tasks(self) -> set[str]:
        """Task names workers registered, read at most every KNOWN_TASKS_S (only used to
        warn about unknown tasks; one read per ``schedule`` call cost a round trip)."""
        if self.registry is not None:
            return set(self.registry.names())
        now = time.monotonic()
        if self._known is None or now - self._known[0] >= KNOWN_TASKS_S:
            self._known = (now, await self.engine.query.known_tasks())
        return self._known[1]

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
            raise ValidationError(f"job {job.task_name!r}: its spec (args, kwargs, task) encodes to"
                                  f" {size} bytes; at most {MAX_SPEC_BYTES} (1 MiB)")
        validate_tenant(job.tenant)
        if job.shell is not None and not is_shell_queue(job.queue):
            raise ValidationError(f"queue {job.queue!r}: shell jobs go to queue 'shell' or "
                                  "'shell-<name>', read only by workers started with "
                                  "--allow-shell (docs/tasks.md)")
        if job.name is not None:
            validate_job_name(job.name)
        validate_labels(job.labels)
        if job.webhook is not None:
            validate_webhook_url(job.webhook.url)
        validate_schedule(job.schedule, now_ms)

    @staticmethod
    def check_def(job: JobDef, now_ms: int) -> None:
        """Every check of a definition that needs no Redis (raises ValidationError)."""
        Client._check(job, now_ms)

    async def schedule(self, job: JobDef) -> str:
        """Create a job; returns its id. Raises DuplicateJob if the id (or the job's name
        in its tenant) exists. A job with a ``unique_key`` its tenant already holds is not
        created: the holder's id is returned (docs/tasks.md, "Unique jobs")."""
        return (await self._create(job, read_back=False))[0]

    async def create(self, job: JobDef) -> Job:
        """``schedule``, returning the job as stored (for a plain job read in the same
        round trip that creates it)."""
        job_id, created = await self._create(job, read_back=True)
        return created if created is not None else await self.get(job_id)

    async def _create(self, job: JobDef, *, read_back: bool) -> tuple[str, Job | None]:
        """One round trip (index write, script, read back pipelined; the time from a
        SyncedClock), after the claims of a name or unique key: the job's name, labels,
        unique key and webhook are written by the script that creates it."""
        now = await self.clock.now_ms()
        await self._validate(job, now)
        job_id = job.id or uuid.uuid4().hex
        claim = f"{job_id} {now}"
        if job.unique_key:
            holder = await self._claims.unique(job.tenant, job.unique_key, claim, now)
            if holder is not None:
                return holder, None
        try:
            if job.name:
                await self._claims.name(job.tenant, job.name, job_id)
            created = await self._create_indexed(job, job_id, now, read_back)
        except BaseException:
            if job.unique_key:
                await self.engine.catalog.claim_unique(job.tenant, job.unique_key, claim, None)
            raise
        return job_id, created

    async def _create_indexed(self, job: JobDef, job_id: str, now: int, read_back: bool
                              ) -> Job | None:
        catalog = self.engine.catalog
        try:
            _, created = await self.engine.jobs.create_job(
                job_id, job, now_ms=now, next_ms=first_fire(job.schedule, now),
                before=catalog.index_commands(job.tenant, job_id, now, job.queue),
                read_back=read_back)
        except BaseException:
            catalog.index_failed([(job.tenant, job.queue)])
            await self._undo_create(job, job_id, now)
            raise
        return created

    async def _undo_create(self, job: JobDef, job_id: str, now: int) -> None:
        await self.engine.catalog.forget(job.tenant, [index_member(now, job_id)])
        if job.name:
            await self.engine.catalog.claim_name(job.tenant, job.name, job_id, None)

    async def schedule_many(self, jobs: Sequence[JobDef], *, chunk: int = 1000) -> list[str]:
        """Create many jobs in pipelined round trips; returns their ids in order. Every job
        is validated before anything is written. Each job is created atomically, the batch
        is not: if some ids already exist, the others are still created and DuplicateJob
        names the first existing one."""
        now = await self.clock.now_ms()
        for job in jobs:
            self._check(job, now)
            if job.unique_key:
                raise ValidationError("unique_key: create unique jobs one by one (schedule)")
        self._warn_unknown({job.task for job in jobs if job.task}, await self._known_tasks())
        ids = [job.id or uuid.uuid4().hex for job in jobs]
        await self._claims.names(jobs, ids)
        index = self.engine.catalog.index_many(
            now, [(j.tenant, i, j.queue) for i, j in zip(ids, jobs, strict=True)])
        try:
            codes = await self.engine.jobs.schedule_many(
                [(job_id, job, first_fire(job.schedule, now)) for job_id, job in zip(ids, jobs,
                                                                                    strict=True)],
                now_ms=now, chunk=chunk, before=index)
        except BaseException:
            self.engine.catalog.index_failed({(j.tenant, j.queue) for j in jobs})
            raise
        dup = [job_id for job_id, code in zip(ids, codes, strict=True) if code == Code.DUPLICATE]
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
        current = await self.get(job_id)
        if job.unique_key is not None and job.unique_key != current.unique_key:
            raise ValidationError(f"unique_key: fixed when the job was created"
                                  f" ({current.unique_key!r}); create a new job instead")
        if version is None:
            version = current.version
        if job.name and job.name != current.name:
            await self._claims.name(job.tenant, job.name, job_id)
        try:
            ver = await self.engine.jobs.schedule_job(job_id, job, now_ms=now,
                                                      next_ms=first_fire(job.schedule, now),
                                                      expect_version=version)
        except BaseException:
            if job.name and job.name != current.name:
                await self.engine.catalog.claim_name(job.tenant, job.name, job_id, None)
            raise
        if current.name and current.name != job.name:
            await self.engine.catalog.claim_name(current.tenant, current.name, job_id, None)
        return ver

    async def get(self, job_id: str) -> Job:
        job = await self.engine.query.get_job(job_id)
        if job is None:
            raise JobNotFound(f"job {job_id!r} not found", job_id=job_id)
        return job

    async def get_many(self, job_ids: Sequence[str]) -> list[Job | None]:
        """Several jobs in one round trip; None where a job is gone."""
        return await self.engine.query.get_jobs(job_ids)

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

    async def pause(self, job_id: str, until_ms: int | None = None) -> None:
        """Pause a job; with ``until_ms`` (epoch ms) it resumes by itself then."""
        now = await self.clock.now_ms()
        if until_ms is not None and not now < until_ms <= MAX_TIME_MS:
            raise ValidationError(f"pause until {until_ms}: must be after now ({now})")
        await self.engine.jobs.pause_job(job_id, now, until_ms)

    async def resume(self, job_id: str) -> None:
        await self.engine.jobs.resume_job(job_id, await self.clock.now_ms())

    async def cancel(self, job_id: str) -> None:
        await self.engine.jobs.cancel_job(job_id, await self.clock.now_ms())

    async def run_now(self, job_id: str) -> str:
        """Enqueue an extra run at once; returns its run id."""
        return await self.engine.jobs.run_now(job_id, await self.clock.now_ms())

    async def cancel_run(self, run_id: str) -> bool:
        """Cancel one run: a waiting one at once (True), a running one by telling its
        worker, which stops it and records ``cancelled`` (False: not ended yet)."""
        code = await self.engine.catalog.cancel_run(run_id, await self.clock.now_ms())
        return code == Code.DONE

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

    # -- operator views (the CLI; the API filters the same data by tenant) ---------------
    async def tenant_jobs(self, tenant: str, *, batch: int = 500) -> AsyncIterator[Job]:
        """Every job of a tenant still in Redis (any state), in creation order."""
        after = ""
        while members := await self.engine.catalog.scan_jobs(tenant, after, batch):
            jobs = await self.engine.query.get_jobs([member_job(m) for m in members])
            for job in jobs:
                if job is not None and job.tenant == tenant:
                    yield job
            after = members[-1]

    async def named_jobs(self, tenant: str) -> dict[str, Job]:
        """A tenant's named jobs that hold their name (not cancelled), by name."""
        return {j.name: j async for j in self.tenant_jobs(tenant)
                if j.name and j.state is not JobState.CANCELLED}

    async def queues(self, tenant: str | None = None) -> list[QueueFigures]:
        """Depth, pending, oldest pending age and rate of every queue (or a tenant's)."""
        names = (await self.engine.catalog.tenant_queues(tenant) if tenant
                 else await self.engine.query.queue_names())
        return await self.engine.catalog.queue_figures(names, await self.clock.now_ms())

    async def set_queue_limits(self, queue: str, limits: QueueLimits) -> None:
        """Replace a queue's queue-wide controls (concurrency, rate, default priority);
        workers apply them within ``worker.queue_config_s`` (docs/tasks.md)."""
        validate_queue(queue)
        limits = msgspec.convert(msgspec.to_builtins(limits), QueueLimits)  # bounds
        await self.engine.limits.set_queue_limits(queue, limits)

    async def queue_limits(self, queue: str) -> QueueLimits:
        return await self.engine.limits.queue_limits(validate_queue(queue))

    async def shard_leases(self) -> list[ShardLease]:
        return await self.engine.query.shard_leases()

    async def find_dead(self, match: Callable[[DeadLetter], bool], limit: int,
                        before: str = "") -> tuple[list[DeadLetter], str | None]:
        """Dead letters that ``match``, newest first, older than entry ``before``; and the
        cursor of the next page (None: no more)."""
        out: list[DeadLetter] = []
        scanned, cursor = 0, before
        while scanned < DEAD_SCAN_MAX:
            page, nxt = await self.engine.catalog.dead_page(cursor, max(limit * 2, 100))
            for d in page:
                scanned, cursor = scanned + 1, d.entry_id
                if match(d):
                    out.append(d)
                    if len(out) == limit:
                        return out, cursor
            if nxt is None:
                return out, None
        return out, cursor

    @staticmethod
    def check_dead_id(dead_id: str) -> tuple[str, str]:
        """(entry id, job id) of a dead letter id, ``<entry id>~<job id>`` (as listed)."""
        m = DEAD_ID.match(dead_id)
        if not m:
            raise ValidationError(f"dead letter id {dead_id!r}: use <entry id>~<job id>,"
                                  " as listed")
        return m.group(1), validate_job_id(m.group(2))

    async def get_dead(self, dead_id: str) -> DeadLetter | None:
        entry_id, job_id = self.check_dead_id(dead_id)
        return await self.engine.catalog.get_dead(job_id, entry_id)

    async def retry_dead(self, letters: Sequence[DeadLetter]) -> tuple[list[str], int]:
        """Each dead letter becomes a fresh run of its job (attempts from 1) and leaves
        the dead letters; returns the new run ids and how many were skipped (their job
        is cancelled or gone: those stay)."""
        run_ids: list[str] = []
        done: list[DeadLetter] = []
        for d in letters:
            try:
                run_ids.append(await self.run_now(d.job_id))
            except (InvalidTransition, JobNotFound):
                continue
            done.append(d)
        await self.engine.catalog.delete_dead(done)
        return run_ids, len(letters) - len(done)

    async def purge_dead(self, letters: Sequence[DeadLetter]) -> int:
        return await self.engine.catalog.delete_dead(letters)
