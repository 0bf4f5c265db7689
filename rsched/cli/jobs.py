"""`rsched jobs ...`: create, change, list, inspect and control jobs.

Owns: the job verbs (add, update, list, show, runs, pause, resume, cancel, run-now,
preview, history) and how a job reads in a table. Must not: reach Redis but through the
Client, nor build JobDefs from options itself (jobdef.py).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
import typer

from rsched import limits
from rsched.archive import history
from rsched.cli import jobdef, parse
from rsched.cli.common import (
    EXIT_FAILED,
    DbConn,
    Dsn,
    Json,
    Limit,
    RedisUrl,
    checked,
    fail,
    settings,
    with_client,
    with_db,
)
from rsched.cli.output import emit_json, show, table, when
from rsched.client import Client
from rsched.models import At, Cron, Every, Job, JobDef, JobState, Run, RunStatus, Schedule
from rsched.timing import validate_schedule

jobs_app = typer.Typer(help="Create, change, inspect and control jobs", no_args_is_help=True,
                       rich_markup_mode="markdown")
JobId = Annotated[str, typer.Argument(help="job id")]


def describe(s: Schedule) -> str:
    match s:
        case Cron(expr=expr, tz=tz):
            return f"cron {expr} {tz}"
        case Every(every_ms=ms):
            return f"every {parse.format_duration(ms / 1000)}"
        case At(at_ms=ms):
            return f"at {parse.iso(ms)}"
    return "now"


def _render_jobs(jobs: list[Job]) -> None:
    table(None, ["ID", "NAME", "STATE", "TASK", "SCHEDULE", "QUEUE", "NEXT", "RUNS", "LABELS"],
          [[j.id, j.name, j.state, j.spec.task, describe(j.trigger.schedule), j.queue,
            when(j.next_ms), j.runs, j.labels] for j in jobs])


def _render_runs(runs: list[Run]) -> None:
    table(None, ["RUN", "STATUS", "ATTEMPT", "SLOT", "STARTED", "FINISHED", "WORKER", "ERROR"],
          [[r.id, r.status, r.attempt, when(r.slot_ms), when(r.started_ms),
            when(r.finished_ms), r.worker, (r.error or "").splitlines()[0][:60]
            if r.error else None] for r in runs])


@jobs_app.command("add")
@jobdef.job_options
def jobs_add(task: Annotated[str, typer.Argument(help="registered task name")],
             opts: dict[str, Any], job_id: Annotated[str | None, typer.Option(
                 "--id", help="job id (default: generated)")] = None,
             tenant: str = "default", redis_url: RedisUrl = None, as_json: Json = False) -> None:
    """Create a job: `rsched jobs add reports.build --cron "0 30 9 * * mon-fri" --tz
    Europe/Berlin --name daily-report`."""
    if not any(opts[k] for k in ("cron", "every", "at", "now")):
        fail("jobs add: give a schedule: --cron, --every, --at or --now")
    job = checked(lambda: jobdef.build(JobDef(task=task, id=job_id, tenant=tenant), opts))

    async def go(c: Client) -> Job:
        return await c.get(await c.schedule(job))

    created = with_client(settings(redis_url), go)
    if as_json:
        emit_json(created)
    else:
        typer.echo(f"created job {created.id}" + (f" ({created.name})" if created.name else "")
                   + f", next fire {when(created.next_ms)}")


@jobs_app.command("update")
@jobdef.job_options
def jobs_update(job_id: JobId, opts: dict[str, Any],
                version: Annotated[int | None, typer.Option(
                    help="only if the job is still at this version")] = None,
                redis_url: RedisUrl = None, as_json: Json = False) -> None:
    """Change the options given (the others stay): `rsched jobs update ID --every 5m`."""

    async def go(c: Client) -> Job | None:
        current = await c.get(job_id)
        base = current.definition()
        new = jobdef.build(base, opts)
        if new == base:
            return None
        await c.update(job_id, new, version if version is not None else current.version)
        return await c.get(job_id)

    updated = with_client(settings(redis_url), go)
    if as_json:
        emit_json(updated)
    else:
        typer.echo(f"update {job_id}: " + ("nothing to change" if updated is None else
                                           f"version {updated.version}"))


def _filters(tenant: str | None, state: JobState | None, queue: str | None,
             task: str | None, name_prefix: str | None, label: list[str] | None) -> Any:
    labels = checked(lambda: parse.labels(label))
    return lambda j: ((tenant is None or j.tenant == tenant)
                      and (state is None or j.state is state)
                      and (queue is None or j.queue == queue)
                      and (task is None or j.spec.task == task)
                      and (name_prefix is None or (j.name or "").startswith(name_prefix))
                      and all(j.labels.get(k) == v for k, v in labels.items()))


@jobs_app.command("list")
def jobs_list(redis_url: RedisUrl = None, limit: Limit = 50,
              after: Annotated[str, typer.Option(help="after this job id (next page)")] = "",
              tenant: Annotated[str | None, typer.Option(
                  help="this tenant's jobs in any state (default: every tenant's active and"
                       " paused jobs)")] = None,
              state: JobState | None = None, queue: str | None = None, task: str | None = None,
              name_prefix: str | None = None,
              label: Annotated[list[str] | None, typer.Option(help="key=value (repeat)")]
              = None, as_json: Json = False) -> None:
    """List jobs (filters combine); pass the last id as --after for the next page."""
    match = _filters(tenant, state, queue, task, name_prefix, label)
    jobs = with_client(settings(redis_url), lambda c: _find(c, tenant, after, limit, match))
    show(jobs, as_json, _render_jobs)


async def _find(c: Client, tenant: str | None, after: str, limit: int, match: Any
                ) -> list[Job]:
    out: list[Job] = []
    if tenant is not None:
        skipping = bool(after)
        async for j in c.tenant_jobs(tenant):
            if not skipping and match(j):
                out.append(j)
            skipping = skipping and j.id != after
            if len(out) == limit:
                break
        return out
    while len(out) < limit:
        ids = await c.list_jobs(after=after, limit=500)
        if not ids:
            break
        out += [j for j in await c.get_many(ids) if j is not None and match(j)]
        after = ids[-1]
    return out[:limit]


@jobs_app.command("show")
def jobs_show(job_id: JobId, redis_url: RedisUrl = None, as_json: Json = False) -> None:
    """Show a job and its recent runs."""

    async def go(c: Client) -> dict[str, Any]:
        return {"job": await c.get(job_id), "runs": await c.runs(job_id, 10)}

    show(with_client(settings(redis_url), go), as_json, _render_show)


def _render_show(doc: dict[str, Any]) -> None:
    j: Job = doc["job"]
    fields = msgspec.to_builtins(j)
    fields.update(schedule=describe(j.trigger.schedule), next=when(j.next_ms),
                  created=when(j.created_ms))
    for k in ("next_ms", "created_ms", "trigger"):
        fields.pop(k)
    grace = parse.format_duration(j.trigger.grace_s)
    fields["misfire"] = f"{j.trigger.misfire.value}, grace {grace}"
    table(f"job {j.id}", ["FIELD", "VALUE"], [[k, v] for k, v in fields.items()])
    _render_runs(doc["runs"])


@jobs_app.command("runs")
def jobs_runs(job_id: JobId, redis_url: RedisUrl = None, limit: Limit = 20,
              as_json: Json = False) -> None:
    """A job's recent runs still in Redis, newest first (`jobs history` for older ones)."""

    async def go(c: Client) -> list[Run]:
        await c.get(job_id)  # an unknown job is an error, not an empty list
        return await c.runs(job_id, limit)

    show(with_client(settings(redis_url), go), as_json, _render_runs)


def _verb(name: str, help_text: str) -> None:
    def command(job_id: JobId, redis_url: RedisUrl = None) -> None:
        result = with_client(settings(redis_url), lambda c: getattr(c, name)(job_id))
        typer.echo(f"{name.replace('_', '-')} {job_id}: ok" + (f" ({result})" if result else ""))

    command.__doc__ = help_text
    jobs_app.command(name.replace("_", "-"))(command)


@jobs_app.command("pause")
def jobs_pause(job_id: JobId, until: Annotated[str | None, typer.Option(
        help="resume by itself at this instant (ISO 8601)")] = None,
               redis_url: RedisUrl = None) -> None:
    """Pause a job (no fires until resumed, or until --until)."""
    until_ms = checked(lambda: parse.instant_ms(until, "--until")) if until else None
    with_client(settings(redis_url), lambda c: c.pause(job_id, until_ms))
    typer.echo(f"pause {job_id}: ok" + (f" (until {parse.iso(until_ms)})" if until_ms else ""))


_verb("resume", "Resume a paused job.")
_verb("cancel", "Cancel a job; a running run is signalled to stop.")
_verb("run_now", "Enqueue one extra run of a job at once.")


@jobs_app.command("preview")
def jobs_preview(cron: str | None = None, tz: str = "UTC",
                 every: Annotated[str | None, typer.Option(help="interval: 30s, 5m")] = None,
                 every_s: Annotated[float | None, typer.Option(
                     help="interval in seconds (older spelling of --every)")] = None,
                 count: Annotated[int, typer.Option(help="how many, 1..1000")] = 5,
                 redis_url: RedisUrl = None, as_json: Json = False) -> None:
    """Print the next fire instants of a cron or interval schedule."""
    if sum(v is not None for v in (cron, every, every_s)) != 1:
        fail("give exactly one of --cron or --every")
    sched = checked(lambda: _preview_schedule(cron, tz, every if every_s is None else every_s,
                                              count))
    instants = with_client(settings(redis_url), lambda c: c.preview(sched, count))
    show(instants, as_json, lambda ms: typer.echo("\n".join(parse.iso(m) or "" for m in ms)))


def _preview_schedule(cron: str | None, tz: str, every: str | float | None,
                      count: int) -> Schedule:
    """The schedule to preview, checked before any connection (bad input exits 2)."""
    limits.check_count(count)
    sched: Schedule = (Cron(expr=cron, tz=tz) if cron is not None else
                       Every(every_ms=parse.every_ms(every or 0)))
    validate_schedule(sched, int(time.time() * 1000))
    return sched


@jobs_app.command("history")
def jobs_history(job_id: JobId, redis_url: RedisUrl = None, dsn: Dsn = None,
                 status: RunStatus | None = None, limit: Limit = 20,
                 cursor: str | None = None,
                 since: Annotated[str | None, typer.Option(help="slots from (ISO 8601)")] = None,
                 until: Annotated[str | None, typer.Option(help="slots before (ISO 8601)")] = None,
                 as_json: Json = False) -> None:
    """A job's archived runs (newest first, --cursor for older pages), its stats, versions
    and its latest skipped slots."""
    s = settings(redis_url, **{"archiver.dsn": dsn})
    since_ms = checked(lambda: parse.instant_ms(since, "--since")) if since else None
    until_ms = checked(lambda: parse.instant_ms(until, "--until")) if until else None

    async def go(conn: DbConn) -> Any:
        versions = await history.versions(conn, job_id)
        if not versions:  # every job's creation is archived as its version 1
            return None
        page = await history.job_runs(conn, job_id, status=status, cursor=cursor, limit=limit,
                                      since_ms=since_ms, until_ms=until_ms)
        return {"runs": page.runs, "next_cursor": page.cursor,
                "stats": await history.stats(conn, job_id), "versions": versions,
                "skips": await history.skips(conn, job_id, limit=10)}

    doc = with_db("jobs history", s, go)
    if doc is None:
        fail(f"job {job_id!r} is not in the archive (unknown, or created too recently to be"
             " archived yet: see the archive lag in `rsched status`)", EXIT_FAILED)
    show(doc, as_json, _render_history)


def _render_history(doc: dict[str, Any]) -> None:
    stats = msgspec.to_builtins(doc["stats"])
    table("stats", list(stats), [list(stats.values())])
    runs = msgspec.to_builtins(doc["runs"])
    if runs:
        table("archived runs", list(runs[0]), [list(r.values()) for r in runs])
    if doc["next_cursor"]:
        typer.echo(f"older: --cursor {doc['next_cursor']}")
