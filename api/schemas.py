"""Request and response bodies of the REST API (msgspec Structs; the OpenAPI schemas).

Owns: the wire shapes of /api/v1, their bounds, and the mapping between them and
rsched's models. Must not: touch the engine, or reuse a stored Struct as an input body.
Times are epoch ms, as in rsched's models; preview also gives ISO 8601 in the job's zone.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

from rsched.limits import MAX_COUNT, MAX_JITTER_MS, MAX_UNIQUE_KEY
from rsched.models import (
    At,
    Cron,
    DeadLetter,
    Every,
    HookOn,
    Immediate,
    Job,
    JobDef,
    JobState,
    Misfire,
    Overlap,
    RetryPolicy,
    Run,
    Schedule,
    SecretName,
    Webhook,
    WebhookUrl,
)
from rsched.task_kinds import HttpTask, ShellTask

QueueName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
TaskName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
JobName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,127}$")]
Labels = Annotated[dict[Annotated[str, msgspec.Meta(
    pattern=r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$")], Annotated[str, msgspec.Meta(
        max_length=256)]], msgspec.Meta(max_length=32)]
Timeout = Annotated[float, msgspec.Meta(gt=0, le=7 * 86400)]
Grace = Annotated[float, msgspec.Meta(ge=0, le=365 * 86400)]
CatchUp = Annotated[int, msgspec.Meta(ge=1, le=10000)]

EpochMs = Annotated[int, msgspec.Meta(ge=0, le=253_402_300_799_999)]  # up to year 9999
JitterS = Annotated[float, msgspec.Meta(ge=0, le=MAX_JITTER_MS / 1000)]
Count = Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNT)]
UniqueKey = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_UNIQUE_KEY)]
MAX_BATCH = 1000


class ScheduleNow(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="now"):
    """Run once, as soon as possible."""


class ScheduleAt(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="at"):
    """Run once at an instant (epoch ms)."""

    at_ms: EpochMs


class ScheduleEvery(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="every",
                    kw_only=True):
    """Run every ``every_ms`` from ``start_ms`` (default: now) until ``end_ms``."""

    every_ms: Annotated[int, msgspec.Meta(ge=1, le=366 * 86_400_000)]
    start_ms: EpochMs | None = None
    end_ms: EpochMs | None = None


class ScheduleCron(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="cron",
                   kw_only=True):
    """A 5-field cron, or 6 fields with seconds first, in an IANA time zone."""

    expr: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    tz: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "UTC"
    end_ms: EpochMs | None = None


ScheduleIn = ScheduleNow | ScheduleAt | ScheduleEvery | ScheduleCron


class WebhookIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A completion webhook: POST JSON to ``url`` when a run ends; ``on`` success,
    failure or always; ``secret`` names the workers' environment variable holding the
    HMAC-SHA256 key (X-Rsched-Signature), never the key itself."""

    url: WebhookUrl
    on: HookOn = HookOn.ALWAYS
    secret: SecretName | None = None

    def to_model(self) -> Webhook:
        return Webhook(url=self.url, on=self.on, secret=self.secret)


def schedule_of(s: ScheduleIn) -> Schedule:
    match s:
        case ScheduleAt(at_ms=at):
            return At(at_ms=at)
        case ScheduleEvery(every_ms=every, start_ms=start, end_ms=end):
            return Every(every_ms=every, start_ms=start, end_ms=end)
        case ScheduleCron(expr=expr, tz=tz, end_ms=end):
            return Cron(expr=expr, tz=tz, end_ms=end)
    return Immediate()


class JobIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A job definition as a client sends it (POST /jobs, PUT /jobs/{id}): exactly one of
    ``task`` (a Python function), ``http`` or ``shell`` (docs/tasks.md)."""

    task: TaskName | None = None
    http: HttpTask | None = None
    shell: ShellTask | None = None
    schedule: ScheduleIn = ScheduleNow()
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    queue: QueueName = "default"
    timeout_s: Timeout | None = 300.0
    retry: RetryPolicy = RetryPolicy()
    misfire: Misfire = Misfire.FIRE_ONCE
    grace_s: Grace = 60.0
    catch_up_max: CatchUp = 100
    overlap: Overlap = Overlap.ALLOW
    name: JobName | None = None
    labels: Labels = {}
    jitter_s: JitterS = 0.0  # each slot fires up to this much late (stable per slot)
    max_runs: Count | None = None  # the job is done after this many runs
    concurrency: Count | None = None  # runs of the job at once, at most
    unique_key: UniqueKey | None = None  # create only: a key the tenant holds returns its job
    webhook: WebhookIn | None = None

    def to_def(self, tenant: str) -> JobDef:
        return JobDef(task=self.task or "", http=self.http, shell=self.shell,
                      schedule=schedule_of(self.schedule), args=self.args,
                      kwargs=self.kwargs, queue=self.queue, tenant=tenant,
                      timeout_s=self.timeout_s, retry=self.retry, misfire=self.misfire,
                      grace_s=self.grace_s, catch_up_max=self.catch_up_max,
                      overlap=self.overlap, name=self.name, labels=self.labels,
                      jitter_s=self.jitter_s, max_runs=self.max_runs,
                      concurrency=self.concurrency, unique_key=self.unique_key,
                      webhook=None if self.webhook is None else self.webhook.to_model())


class JobPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """A partial change (PATCH /jobs/{id}): only the fields given are replaced."""

    task: TaskName | UnsetType = UNSET
    http: HttpTask | UnsetType = UNSET
    shell: ShellTask | UnsetType = UNSET
    schedule: ScheduleIn | UnsetType = UNSET
    args: list[Any] | UnsetType = UNSET
    kwargs: dict[str, Any] | UnsetType = UNSET
    queue: QueueName | UnsetType = UNSET
    timeout_s: Timeout | None | UnsetType = UNSET
    retry: RetryPolicy | UnsetType = UNSET
    misfire: Misfire | UnsetType = UNSET
    grace_s: Grace | UnsetType = UNSET
    catch_up_max: CatchUp | UnsetType = UNSET
    overlap: Overlap | UnsetType = UNSET
    name: JobName | None | UnsetType = UNSET
    labels: Labels | UnsetType = UNSET
    jitter_s: JitterS | UnsetType = UNSET
    max_runs: Count | None | UnsetType = UNSET
    concurrency: Count | None | UnsetType = UNSET
    webhook: WebhookIn | None | UnsetType = UNSET


class JobBatchIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    jobs: Annotated[list[JobIn], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class JobBatchOut(msgspec.Struct, kw_only=True):
    ids: list[str]


class JobOut(msgspec.Struct, kw_only=True):
    """A job as the API shows it; ``version`` is also its ETag (for If-Match)."""

    id: str
    name: str | None
    labels: dict[str, str]
    state: JobState
    version: int
    task: str
    schedule: Schedule
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    timeout_s: float | None
    retry: RetryPolicy
    misfire: Misfire
    grace_s: float
    catch_up_max: int
    overlap: Overlap
    next_ms: int | None
    last_slot_ms: int | None
    created_ms: int | None
    runs: int
    last_run_id: str | None
    jitter_s: float = 0.0
    max_runs: int | None = None
    concurrency: int | None = None
    unique_key: str | None = None
    webhook: Webhook | None = None
    paused_until_ms: int | None = None
    http: HttpTask | None = None  # secrets appear as {"secret": "name"}, never values
    shell: ShellTask | None = None


def job_out(job: Job) -> JobOut:
    spec, trig = job.spec, job.trigger
    return JobOut(id=job.id, name=job.name, labels=job.labels, state=job.state,
                  version=job.version, task=spec.task, schedule=trig.schedule, args=spec.args,
                  kwargs=spec.kwargs, queue=job.queue, timeout_s=spec.timeout_s,
                  retry=spec.retry, misfire=trig.misfire, grace_s=trig.grace_s,
                  catch_up_max=trig.catch_up_max, overlap=job.overlap, next_ms=job.next_ms,
                  last_slot_ms=job.last_slot_ms, created_ms=job.created_ms, runs=job.runs,
                  last_run_id=job.last_run_id, jitter_s=trig.jitter_ms / 1000,
                  max_runs=job.max_runs, concurrency=job.concurrency,
                  unique_key=job.unique_key, webhook=job.webhook,
                  paused_until_ms=job.paused_until_ms,
                  http=spec.http, shell=spec.shell)


def job_in_of(job: Job) -> dict[str, Any]:
    """The JobIn fields of a stored job, as builtins (the base a PATCH applies to)."""
    out = msgspec.to_builtins(job_out(job))
    if job.spec.http is not None or job.spec.shell is not None:
        del out["task"]  # the built-in name (rsched.http, rsched.shell) is not an input
    return {k: v for k, v in out.items() if k in JobIn.__struct_fields__}


KINDS = ("task", "http", "shell")


def patched(job: Job, patch: dict[str, Any]) -> dict[str, Any]:
    """A PATCH applied to a stored job's fields; a patch naming a kind replaces the kind."""
    base = job_in_of(job)
    if any(k in patch for k in KINDS):
        base = {k: v for k, v in base.items() if k not in KINDS}
    return {**base, **patch}


class JobPage(msgspec.Struct, kw_only=True):
    items: list[JobOut]
    next_cursor: str | None  # pass as ?cursor= for the next page; None: the end


class RunPage(msgspec.Struct, kw_only=True):
    items: list[Run]
    next_cursor: str | None


class RunAccepted(msgspec.Struct, kw_only=True):
    run_id: str
    job_id: str


class RunCancelled(msgspec.Struct, kw_only=True):
    run_id: str
    status: str  # cancelled (was waiting) | cancelling (its worker is told to stop)


class Preview(msgspec.Struct, kw_only=True):
    job_id: str
    tz: str
    times_ms: list[int]
    times: list[str]  # the same instants, ISO 8601 in the job's zone


class QueueOut(msgspec.Struct, kw_only=True):
    name: str
    depth: int
    pending: int
    oldest_age_ms: int | None
    per_min: int


class QueueList(msgspec.Struct, kw_only=True):
    items: list[QueueOut]


class DeadLetterOut(msgspec.Struct, kw_only=True):
    id: str  # "<entry id>~<job id>": what /dead-letters/{id}/retry takes
    run_id: str
    job_id: str
    queue: str
    status: str
    attempt: int
    error: str
    at_ms: int


def dead_out(d: DeadLetter) -> DeadLetterOut:
    return DeadLetterOut(id=f"{d.entry_id}~{d.job_id}", run_id=d.run_id, job_id=d.job_id,
                         queue=d.queue, status=d.status.value, attempt=d.attempt,
                         error=d.error, at_ms=d.at_ms)


class DeadPage(msgspec.Struct, kw_only=True):
    items: list[DeadLetterOut]
    next_cursor: str | None


class Retried(msgspec.Struct, kw_only=True):
    retried: int
    run_ids: list[str]
    skipped: int = 0  # dead letters whose job no longer accepts runs (cancelled or gone)


class Purged(msgspec.Struct, kw_only=True):
    purged: int


class StatusOut(msgspec.Struct, kw_only=True):
    now_ms: int
    tenant: str
    jobs_due: int  # deployment-wide
    queues: dict[str, int]  # this tenant's queues -> entries in their streams
    archive_lag_ms: int
    workers: int  # live workers (heartbeat within 3 x heartbeat)
    schedulers: int


class Health(msgspec.Struct, kw_only=True):
    status: str  # ok | unavailable
    checks: dict[str, str] = {}


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """RFC 9457 problem details; ``field`` names the input at fault when there is one."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str = ""
    field: str | None = None
    instance: str | None = None
