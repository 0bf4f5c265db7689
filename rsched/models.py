"""Typed data of rsched: schedules, job definitions, runs and their states.

Owns: the msgspec Structs that are stored (as opaque blobs) or returned.
Must not: touch Redis or compute fire times (see ``timing.py``).
Stored Structs evolve safely: new fields get defaults, types never change.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import msgspec

from rsched.errors import ValidationError
from rsched.limits import (
    MAX_BACKOFF_FACTOR,
    MAX_COUNT,
    MAX_CRON_EXPR,
    MAX_DURATION_S,
    MAX_EVERY_MS,
    MAX_JITTER_MS,
    MAX_TASK_NAME,
    MAX_TENANT,
    MAX_TIME_MS,
    MAX_TZ_NAME,
    MAX_UNIQUE_KEY,
    MAX_URL,
)
from rsched.names import MAX_PRIORITY, MIN_PRIORITY
from rsched.task_kinds import HTTP_TASK, SHELL_TASK, HttpTask, ShellTask

# Bounds: docs/decisions.md "Input limits" (rsched/limits.py says why).
PositiveS = Annotated[float, msgspec.Meta(gt=0, le=MAX_DURATION_S)]
DurationS = Annotated[float, msgspec.Meta(ge=0, le=MAX_DURATION_S)]
TimeMs = Annotated[int, msgspec.Meta(ge=0, le=MAX_TIME_MS)]
TaskName = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TASK_NAME)]
Priority = Annotated[int, msgspec.Meta(ge=MIN_PRIORITY, le=MAX_PRIORITY)]


class Immediate(msgspec.Struct, frozen=True, tag="now"):
    """Run once, as soon as possible."""


class At(msgspec.Struct, frozen=True, tag="at"):
    """Run once at a UTC instant (epoch ms)."""

    at_ms: TimeMs


class Every(msgspec.Struct, frozen=True, tag="every", kw_only=True, omit_defaults=True):
    """Run every ``every_ms`` from ``start_ms`` (default: when scheduled) until ``end_ms``.
    Zones do not apply: the interval is elapsed time."""

    every_ms: Annotated[int, msgspec.Meta(ge=1, le=MAX_EVERY_MS)]
    start_ms: TimeMs | None = None
    end_ms: TimeMs | None = None


class Cron(msgspec.Struct, frozen=True, tag="cron", kw_only=True, omit_defaults=True):
    """A 5-field cron, or 6 fields with seconds first, in an IANA time zone."""

    expr: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CRON_EXPR)]
    tz: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TZ_NAME)] = "UTC"
    end_ms: TimeMs | None = None


Schedule = Immediate | At | Every | Cron


class Misfire(StrEnum):
    FIRE_ONCE = "fire_once"  # all due slots are one run (if the latest is within grace)
    SKIP = "skip"  # no run for missed slots; next future slot
    CATCH_UP = "catch_up"  # every missed slot, at most Trigger.catch_up_max of them


class Overlap(StrEnum):
    ALLOW = "allow"
    FORBID = "forbid"  # skip a slot while the previous run is unfinished
    REPLACE = "replace"  # cancel the unfinished run, then start the slot's run


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 3
    backoff_s: DurationS = 1.0
    backoff_factor: Annotated[float, msgspec.Meta(ge=1, le=MAX_BACKOFF_FACTOR)] = 2.0
    backoff_max_s: DurationS = 300.0
    jitter: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.2  # +- fraction of the delay


class Trigger(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What the scheduler needs to compute fires; stored as the job's ``sched`` blob."""

    schedule: Schedule
    misfire: Misfire = Misfire.FIRE_ONCE
    # A lone due slot late by at most this is on time (docs/decisions.md, misfires).
    grace_s: DurationS = 60.0
    catch_up_max: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 100
    # Each slot fires up to this much late, by an offset stable per (job, slot): jobs that
    # share a slot spread over the window (docs/tasks.md, "Execution controls").
    jitter_ms: Annotated[int, msgspec.Meta(ge=0, le=MAX_JITTER_MS)] = 0


class HookOn(StrEnum):
    """Which finished runs a completion webhook is sent for."""

    SUCCESS = "success"  # succeeded
    FAILURE = "failure"  # failed, dead, timed_out
    ALWAYS = "always"  # any final status, cancelled included


# An http(s) URL with a host; checked again (parsed) by the client.
WebhookUrl = Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s/?#@]+(/\S*)?$",
                                         max_length=MAX_URL)]
# The name of the signing key: an environment variable of the workers, never the key itself.
SecretName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]


class Webhook(msgspec.Struct, frozen=True, kw_only=True,
              forbid_unknown_fields=True):
    """A completion webhook: POST JSON to ``url`` when a run ends (docs/tasks.md)."""

    url: WebhookUrl
    on: HookOn = HookOn.ALWAYS
    secret: SecretName | None = None  # HMAC-SHA256 key, resolved by the worker at delivery


class JobSpec(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a worker needs to execute a run; stored as the job's ``spec`` blob."""

    task: TaskName
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    timeout_s: PositiveS | None = 300.0
    retry: RetryPolicy = RetryPolicy()
    http: HttpTask | None = None  # task is rsched.http: one HTTP request per run
    shell: ShellTask | None = None  # task is rsched.shell: one process per run
    tenant: str = "default"  # the job's tenant, for the run context


class JobDef(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A job as a user defines it (the input of Client.schedule). Its kind is exactly
    one of ``task`` (a registered Python function), ``http`` or ``shell``."""

    task: Annotated[str, msgspec.Meta(max_length=MAX_TASK_NAME)] = ""
    schedule: Schedule = Immediate()
    id: str | None = None
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    queue: str = "default"
    tenant: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TENANT)] = "default"
    timeout_s: PositiveS | None = 300.0
    retry: RetryPolicy = RetryPolicy()
    misfire: Misfire = Misfire.FIRE_ONCE
    grace_s: DurationS = 60.0
    catch_up_max: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 100
    overlap: Overlap = Overlap.ALLOW
    name: str | None = None  # unique within the tenant while the job is not cancelled
    labels: dict[str, str] = {}
    jitter_s: Annotated[float, msgspec.Meta(ge=0, le=MAX_JITTER_MS / 1000)] = 0.0
    max_runs: Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNT)] | None = None  # then done
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNT)] | None = None  # per job
    # Creating a job with a key its tenant already holds returns that job's id.
    unique_key: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_UNIQUE_KEY)
                          ] | None = None
    webhook: Webhook | None = None  # POSTed when a run ends (docs/tasks.md, webhooks)
    http: HttpTask | None = None
    shell: ShellTask | None = None

    # 0..9, higher drained first (docs/tasks.md "Priorities"); None: the queue's default
    priority: Priority | None = None

    def __post_init__(self) -> None:
        kinds = [k for k, v in (("task", self.task), ("http", self.http),
                                ("shell", self.shell)) if v]
        if len(kinds) != 1:
            raise ValidationError("a job has exactly one of task, http or shell"
                                  + (f" (got {', '.join(kinds)})" if kinds else ""))
        if (self.http or self.shell) and (self.args or self.kwargs):
            raise ValidationError("args and kwargs are for Python tasks only")

    @property
    def task_name(self) -> str:
        """The task name stored and shown: the function's, or rsched.http / rsched.shell."""
        return self.task or (HTTP_TASK if self.http else SHELL_TASK)

    def spec(self) -> JobSpec:
        return JobSpec(task=self.task_name, args=self.args, kwargs=self.kwargs,
                       timeout_s=self.timeout_s, retry=self.retry, http=self.http,
                       shell=self.shell, tenant=self.tenant)

    def trigger(self) -> Trigger:
        return Trigger(schedule=self.schedule, misfire=self.misfire, grace_s=self.grace_s,
                       catch_up_max=self.catch_up_max, jitter_ms=round(self.jitter_s * 1000))


class JobState(StrEnum):
    ACTIVE = "active"  # has (or will get) a due entry
    PAUSED = "paused"  # no due entry until resumed
    DONE = "done"  # one-shot fired, or recurring window ended
    CANCELLED = "cancelled"


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # Fatal error: no retry
    RETRYING = "retrying"  # failed attempt, next one waits in the due index
    DEAD = "dead"  # attempts exhausted; in the dead-letter stream
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"  # last attempt exceeded timeout_s


TERMINAL = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.DEAD, RunStatus.CANCELLED,
     RunStatus.TIMED_OUT}
)
# The final statuses as the scripts that need them take them (the one definition).
TERMINAL_ARG = " ".join(sorted(TERMINAL))


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """A job as stored, returned by Client.get."""

    id: str
    state: JobState
    version: int
    queue: str
    tenant: str
    spec: JobSpec
    trigger: Trigger
    overlap: Overlap
    next_ms: int | None
    last_slot_ms: int | None
    runs: int
    last_run_id: str | None
    name: str | None = None
    labels: dict[str, str] = {}
    created_ms: int | None = None
    max_runs: int | None = None
    concurrency: int | None = None
    paused_until_ms: int | None = None
    unique_key: str | None = None
    webhook: Webhook | None = None
    priority: int | None = None

    def definition(self) -> JobDef:
        """The JobDef that (re)creates this job as it is now (the input of update)."""
        return JobDef(
            id=self.id, task=self.spec.task, schedule=self.trigger.schedule,
            args=self.spec.args, kwargs=self.spec.kwargs, queue=self.queue,
            tenant=self.tenant, timeout_s=self.spec.timeout_s, retry=self.spec.retry,
            misfire=self.trigger.misfire, grace_s=self.trigger.grace_s,
            catch_up_max=self.trigger.catch_up_max, overlap=self.overlap, name=self.name,
            labels=self.labels, jitter_s=self.trigger.jitter_ms / 1000,
            max_runs=self.max_runs, concurrency=self.concurrency,
            unique_key=self.unique_key, webhook=self.webhook)


class Run(msgspec.Struct, frozen=True, kw_only=True):
    """A run (one fire of a slot, all its attempts), returned by Client.runs."""

    id: str
    job_id: str
    queue: str
    tenant: str
    status: RunStatus
    attempt: int
    slot_ms: int
    enqueued_ms: int | None = None
    started_ms: int | None = None
    finished_ms: int | None = None
    worker: str | None = None
    error: str | None = None
    # its completion webhook: delivered | failed (gave up), attempts, last HTTP status
    webhook_status: str | None = None
    webhook_attempts: int | None = None
    webhook_code: int | None = None
    result: Any = None  # what the task returned (JSON, capped: docs/tasks.md)
    priority: int | None = None  # the job's explicit priority (its lane), if any


class QueueLimits(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Queue-wide controls, held in Redis for every worker (Client.set_queue_limits)."""

    concurrency: Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNT)] | None = None  # at once
    rate: Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNT)] | None = None  # starts per period
    period_s: Annotated[float, msgspec.Meta(ge=0.001, le=86_400)] = 1.0
    burst: Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNT)] = 1  # starts at once, at most
    priority: Priority = 0  # the level of jobs that set none


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    entry_id: str
    run_id: str
    job_id: str
    queue: str
    status: RunStatus
    attempt: int
    error: str
    at_ms: int


class Status(msgspec.Struct, frozen=True, kw_only=True):
    """A deployment at a glance (`rsched status`), on the Redis clock."""

    now_ms: int
    due: int  # jobs and retries in the due index (scheduled, not yet fired)
    queues: dict[str, int]  # queue -> entries in its streams (pending or not yet trimmed)
    events: int  # entries in the events streams (archived ones go at the next trim)
    archive_lag_ms: int  # age of the oldest event no archiver has committed; 0: none
    workers: dict[str, int]  # worker id -> ms since its last heartbeat
    schedulers: dict[str, int]  # scheduler id -> ms since its last heartbeat


class ShardLease(msgspec.Struct, frozen=True, kw_only=True):
    """Who holds a shard's scheduler lease (`rsched status`)."""

    shard: int
    owner: str | None  # scheduler id; None: no scheduler fires this shard now
    ttl_ms: int | None  # ms until the lease lapses unless renewed


class Role(StrEnum):
    """What an API key may do; each role includes the ones before it."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        order = (Role.READ, Role.WRITE, Role.ADMIN)
        return order.index(self) >= order.index(needed)


class ApiKey(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An API key as stored: only the sha256 of its secret, never the secret."""

    id: str
    tenant: str
    role: Role
    sha256: str
    created_ms: int
    name: str = ""
    revoked_ms: int | None = None
