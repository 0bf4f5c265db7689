"""The job file of `rsched apply` and `rsched export` (docs/cli.md, "Job files").

Owns: the file's typed shape (unknown fields are errors naming their place), reading it
into JobDefs, writing JobDefs back in the same shape with defaults left out, and the
field-by-field difference of two definitions. Must not: talk to Redis or decide what to
change (apply.py plans).

Every JobDef maps to one FileJob and back, so `export | apply --dry-run` plans nothing:
durations are written in their shortest exact spelling and instants as UTC ISO 8601.
"""

from __future__ import annotations

from typing import Any

import msgspec
import yaml

from rsched.cli import parse
from rsched.errors import ValidationError
from rsched.models import (
    At,
    Cron,
    Every,
    HookOn,
    Immediate,
    JobDef,
    Misfire,
    Overlap,
    RetryPolicy,
    Schedule,
    Webhook,
)

Duration = str | float


class _Loader(yaml.SafeLoader):
    """YAML without implicit timestamps: an unquoted `2027-01-01T09:00Z` stays text and
    is read as an instant like every other (a bare date would lose its offset)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


class FileRetry(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True,
                forbid_unknown_fields=True):
    max_attempts: int = 3
    backoff: Duration = "1s"
    backoff_factor: float = 2.0
    backoff_max: Duration = "5m"
    jitter: float = 0.2


class FileWebhook(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True,
                  forbid_unknown_fields=True):
    url: str
    on: HookOn = HookOn.ALWAYS
    secret: str | None = None


class FileJob(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True,
              forbid_unknown_fields=True):
    name: str
    task: str
    cron: str | None = None
    tz: str = "UTC"
    every: Duration | None = None
    start: str | None = None
    end: str | None = None
    at: str | None = None
    now: bool = False
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    queue: str = "default"
    timeout: Duration | None = "5m"
    retry: FileRetry = FileRetry()
    misfire: Misfire = Misfire.FIRE_ONCE
    grace: Duration = "1m"
    catch_up_max: int = 100
    overlap: Overlap = Overlap.ALLOW
    labels: dict[str, str] = {}
    jitter: Duration | None = None  # each slot fires up to this much late
    max_runs: int | None = None
    concurrency: int | None = None
    unique_key: str | None = None
    webhook: FileWebhook | None = None


class JobFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    jobs: list[FileJob] = []


def load(text: str, tenant: str) -> list[JobDef]:
    """The jobs of a file, checked: shape, one schedule each, unique names."""
    try:
        raw = yaml.load(text, Loader=_Loader)  # a SafeLoader
    except yaml.YAMLError as exc:
        raise ValidationError(f"job file: not YAML: {' '.join(str(exc).split())}") from None
    try:
        doc = msgspec.convert(raw if raw is not None else {}, JobFile)
    except msgspec.ValidationError as exc:
        raise ValidationError(f"job file: {exc}") from None
    names = [j.name for j in doc.jobs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValidationError(f"job file: name {dup[0]!r} appears twice")
    out = []
    for i, fj in enumerate(doc.jobs):
        try:
            out.append(to_def(fj, tenant))
        except ValidationError as exc:
            raise ValidationError(f"job file: `$.jobs[{i}]` ({fj.name}): {exc}") from None
    return out


def dump(jobs: list[JobDef]) -> str:
    doc = {"jobs": [_written(of_def(j)) for j in jobs]}
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def _written(s: msgspec.Struct) -> dict[str, Any]:
    """A struct's fields without those at their default (msgspec's omit_defaults compares
    strings by identity, so a decoded "default" would still be written)."""
    out: dict[str, Any] = {}
    for f in msgspec.structs.fields(s):
        v = getattr(s, f.name)
        default = f.default if f.default_factory is msgspec.NODEFAULT else f.default_factory()
        if v != default:
            out[f.name] = _written(v) if isinstance(v, msgspec.Struct) else \
                msgspec.to_builtins(v)
    return out


def _schedule(fj: FileJob) -> Schedule:
    given = [k for k in ("cron", "every", "at", "now") if getattr(fj, k)]
    if len(given) != 1:
        raise ValidationError("give exactly one of cron, every, at, now")
    end = parse.instant_ms(fj.end, "end") if fj.end else None
    if fj.cron:
        return Cron(expr=fj.cron, tz=fj.tz, end_ms=end)
    if fj.every is not None:
        start = parse.instant_ms(fj.start, "start") if fj.start else None
        return Every(every_ms=parse.every_ms(fj.every), start_ms=start, end_ms=end)
    if fj.at:
        return At(at_ms=parse.instant_ms(fj.at, "at"))
    return Immediate()


def to_def(fj: FileJob, tenant: str) -> JobDef:
    r = fj.retry
    return JobDef(
        name=fj.name, task=fj.task, schedule=_schedule(fj), args=fj.args, kwargs=fj.kwargs,
        queue=fj.queue, tenant=tenant,
        timeout_s=None if fj.timeout is None else parse.duration_s(fj.timeout, "timeout"),
        retry=RetryPolicy(max_attempts=r.max_attempts,
                          backoff_s=parse.duration_s(r.backoff, "retry.backoff"),
                          backoff_factor=r.backoff_factor,
                          backoff_max_s=parse.duration_s(r.backoff_max, "retry.backoff_max"),
                          jitter=r.jitter),
        misfire=fj.misfire, grace_s=parse.duration_s(fj.grace, "grace"),
        catch_up_max=fj.catch_up_max, overlap=fj.overlap, labels=fj.labels,
        jitter_s=0.0 if fj.jitter is None else parse.duration_s(fj.jitter, "jitter"),
        max_runs=fj.max_runs, concurrency=fj.concurrency, unique_key=fj.unique_key,
        webhook=None if fj.webhook is None else Webhook(
            url=fj.webhook.url, on=fj.webhook.on, secret=fj.webhook.secret))


def _schedule_fields(s: Schedule) -> dict[str, Any]:
    match s:
        case Cron(expr=expr, tz=tz, end_ms=end):
            return {"cron": expr, "tz": tz, "end": parse.iso(end)}
        case Every(every_ms=every, start_ms=start, end_ms=end):
            return {"every": parse.format_duration(every / 1000), "start": parse.iso(start),
                    "end": parse.iso(end)}
        case At(at_ms=at):
            return {"at": parse.iso(at)}
    return {"now": True}


def of_def(j: JobDef) -> FileJob:
    r, fd = j.retry, parse.format_duration
    return FileJob(
        name=j.name or "", task=j.task, **_schedule_fields(j.schedule), args=j.args,
        kwargs=j.kwargs, queue=j.queue, timeout=None if j.timeout_s is None else fd(j.timeout_s),
        retry=FileRetry(max_attempts=r.max_attempts, backoff=fd(r.backoff_s),
                        backoff_factor=r.backoff_factor, backoff_max=fd(r.backoff_max_s),
                        jitter=r.jitter),
        misfire=j.misfire, grace=fd(j.grace_s), catch_up_max=j.catch_up_max,
        overlap=j.overlap, labels=j.labels, jitter=fd(j.jitter_s) if j.jitter_s else None,
        max_runs=j.max_runs, concurrency=j.concurrency, unique_key=j.unique_key,
        webhook=None if j.webhook is None else FileWebhook(
            url=j.webhook.url, on=j.webhook.on, secret=j.webhook.secret))


def changes(current: JobDef, desired: JobDef) -> dict[str, tuple[Any, Any]]:
    """Fields (in file spelling, ``retry.backoff`` for nested ones) that differ:
    name -> (current, desired). Empty when applying ``desired`` would change nothing."""
    a, b = _flat(of_def(current)), _flat(of_def(desired))
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


def _flat(fj: FileJob) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in fj.__struct_fields__:
        v = getattr(fj, k)
        if isinstance(v, FileRetry):
            out |= {f"retry.{f}": getattr(v, f) for f in v.__struct_fields__}
        else:
            out[k] = v
    return out
