"""`rsched apply` and `rsched export`: a tenant's named jobs made equal to a job file.

Owns: the plan (create, update what changed, with --prune cancel named jobs the file no
longer lists), printing it, carrying it out through the Client, and writing the named
jobs back out in the file's format. Must not: touch unnamed jobs (the file cannot name
them) or reach Redis but through the Client.

Like `kubectl apply`: jobs match by name; a job's pause state is not part of the file.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer

from rsched.cli import jobfile
from rsched.cli.common import (
    EXIT_FAILED,
    Json,
    RedisUrl,
    Tenant,
    checked,
    fail,
    settings,
    with_client,
)
from rsched.cli.output import emit_json, progress
from rsched.client import Client
from rsched.errors import RschedError, ValidationError
from rsched.models import JobDef, JobState


class Update(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    job_id: str
    version: int
    changes: dict[str, tuple[Any, Any]]  # field -> (current, desired), file spelling


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    create: list[str]  # names
    update: list[Update]
    cancel: dict[str, str]  # name -> job id
    unchanged: list[str]

    def empty(self) -> bool:
        return not (self.create or self.update or self.cancel)


class Outcome(msgspec.Struct, kw_only=True):
    done: int = 0
    errors: list[str] = []


async def make_plan(client: Client, tenant: str, desired: list[JobDef], prune: bool) -> Plan:
    current = await client.named_jobs(tenant)
    create, update, unchanged = [], [], []
    for d in desired:
        name = d.name or ""
        job = current.get(name)
        if job is None:
            create.append(name)
            continue
        diff = jobfile.changes(job.definition(), d)
        if diff:
            update.append(Update(name=name, job_id=job.id, version=job.version, changes=diff))
        else:
            unchanged.append(name)
    listed = {d.name for d in desired}
    cancel = {n: j.id for n, j in sorted(current.items()) if prune and n not in listed
              and j.state in (JobState.ACTIVE, JobState.PAUSED)}
    return Plan(create=create, update=update, cancel=cancel, unchanged=unchanged)


async def carry_out(client: Client, plan: Plan, desired: list[JobDef]) -> Outcome:
    by_name = {d.name: d for d in desired}
    out = Outcome()
    steps = len(plan.create) + len(plan.update) + len(plan.cancel)
    with progress(steps, "applying") as advance:
        for name in plan.create:
            await _step(out, f"create {name}", client.schedule(by_name[name]))
            advance(1)
        for u in plan.update:
            await _step(out, f"update {u.name}", client.update(u.job_id, msgspec.structs.replace(
                by_name[u.name], id=u.job_id), u.version))
            advance(1)
        for name, job_id in plan.cancel.items():
            await _step(out, f"cancel {name}", client.cancel(job_id))
            advance(1)
    return out


async def _step(out: Outcome, what: str, action: Any) -> None:
    try:
        await action
        out.done += 1
    except RschedError as exc:  # the other steps still run; the command exits 1
        out.errors.append(f"{what}: {exc}")


def print_plan(plan: Plan) -> None:
    for name in plan.create:
        typer.echo(f"+ create {name}")
    for u in plan.update:
        typer.echo(f"~ update {u.name} ({u.job_id})")
        for field, (old, new) in u.changes.items():
            typer.echo(f"    {field}: {old!r} -> {new!r}")
    for name, job_id in plan.cancel.items():
        typer.echo(f"- cancel {name} ({job_id})")
    typer.echo(f"plan: {len(plan.create)} to create, {len(plan.update)} to update,"
               f" {len(plan.cancel)} to cancel, {len(plan.unchanged)} unchanged")


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text()
    except OSError as exc:
        fail(f"--file {path}: {exc.strerror or exc}")


def _checked_file(text: str, tenant: str) -> list[JobDef]:
    """The file's jobs, each fully checked before anything is planned or changed."""
    desired = jobfile.load(text, tenant)
    now = int(time.time() * 1000)
    for i, d in enumerate(desired):
        try:
            Client.check_def(d, now)
        except ValidationError as exc:
            raise ValidationError(f"job file: `$.jobs[{i}]` ({d.name}): {exc}") from None
    return desired


FileOpt = Annotated[str, typer.Option("--file", "-f", help="job file (YAML); - for stdin")]


def apply(file: FileOpt, redis_url: RedisUrl = None, tenant: Tenant = "default",
          prune: Annotated[bool, typer.Option(
              help="cancel named jobs of the tenant the file does not list")] = False,
          dry_run: Annotated[bool, typer.Option(help="print the plan only")] = False,
          as_json: Json = False) -> None:
    """Make the tenant's named jobs equal to a job file: create, update what changed and,
    with --prune, cancel the named jobs it no longer lists. Prints the plan first."""
    desired = checked(lambda: _checked_file(_read(file), tenant))

    async def go(c: Client) -> tuple[Plan, Outcome | None]:
        plan = await make_plan(c, tenant, desired, prune)
        if dry_run or plan.empty():
            return plan, None
        return plan, await carry_out(c, plan, desired)

    plan, outcome = with_client(settings(redis_url), go)
    if as_json:
        emit_json({"plan": plan, "applied": outcome})
    else:
        print_plan(plan)
        if outcome is not None:
            typer.echo(f"applied {outcome.done} change(s)")
    if outcome is not None and outcome.errors:
        for line in outcome.errors:
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(EXIT_FAILED)


def export(redis_url: RedisUrl = None, tenant: Tenant = "default",
           output: Annotated[str | None, typer.Option(
               "--output", "-o", help="write to this file instead of stdout")] = None) -> None:
    """Write the tenant's named jobs (not cancelled) as a job file for `rsched apply`."""

    async def go(c: Client) -> list[JobDef]:
        return [j.definition() for j in (await c.named_jobs(tenant)).values()]

    text = jobfile.dump(with_client(settings(redis_url), go))
    if output is None:
        typer.echo(text, nl=False)
    else:
        Path(output).write_text(text)
