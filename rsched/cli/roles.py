"""The long-running `rsched` commands: scheduler, worker, archiver, api and dev.

Owns: building each role's settings from options, `rsched dev` (private stores when none
are reachable, every role in one process, the example job and, with --demo, the demo
jobs). Must not: hold the roles' logic (rsched/roles/).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer

from rsched import log
from rsched.cli import jobfile
from rsched.cli.apply import carry_out, make_plan
from rsched.cli.common import Dsn, RedisUrl, run, settings
from rsched.client import Client
from rsched.devservers import dev_stores, free_port, port_free
from rsched.errors import RschedError
from rsched.models import Cron, JobDef
from rsched.roles import runner
from rsched.settings import Settings
from rsched.task_kinds import HttpTask

LogLevel = Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR")]
Modules = Annotated[list[str] | None, typer.Option(
    "--module", help="task module to import (also RSCHED_WORKER__MODULES)")]

# `rsched dev --demo`: every state on the dashboard within a minute. A cron HTTP job
# joins these once an HTTP task kind exists (docs/cli.md).
DEMO_JOBS = """
jobs:
  - name: demo-every-second
    task: examples.hello
    every: 1s
    kwargs: {who: demo}
    labels: {demo: "true"}
  - name: demo-dead-letter
    task: examples.fail
    every: 30s
    kwargs: {message: "demo: this task always fails"}
    retry: {max_attempts: 2, backoff: 1s}
    labels: {demo: "true"}
"""


def _serve(build: Callable[[Settings], Awaitable[Any]], s: Settings, grace_s: float) -> None:
    """Run one role built from the settings until SIGINT/SIGTERM."""
    async def go() -> None:
        await runner.run_until_signal([await build(s)], grace_s)

    run(go())


def scheduler(redis_url: RedisUrl = None, log_level: LogLevel = "INFO") -> None:
    """Run a scheduler (leases shards, fires due slots)."""
    s = settings(redis_url)
    log.configure(log_level)
    _serve(runner.build_scheduler, s, 1.0)


def worker(redis_url: RedisUrl = None, queues: str | None = None, module: Modules = None,
           concurrency: int | None = None, log_level: LogLevel = "INFO",
           allow_shell: Annotated[bool, typer.Option(
               "--allow-shell", help="run shell tasks (and read the shell queues)")] = False,
           secrets_file: Annotated[str | None, typer.Option(
               help="secrets for HTTP and shell tasks (JSON or KEY=VALUE)")] = None) -> None:
    """Run a worker (executes runs of the given queues)."""
    s = settings(redis_url, **{"worker.queues": queues.split(",") if queues else None,
                               "worker.modules": module, "worker.concurrency": concurrency,
                               "worker.allow_shell": allow_shell or None,
                               "worker.secrets_file": secrets_file})
    log.configure(log_level)

    async def go() -> None:
        await runner.run_until_signal(await runner.worker_components(s), s.worker.grace_s)

    code = 0
    try:
        run(go())
    except typer.Exit as exc:
        code = exc.exit_code
        raise
    finally:  # a crashed worker exits non-zero even with task threads left behind
        runner.exit_abandoning_task_threads(code=code)


def archiver(redis_url: RedisUrl = None, dsn: Dsn = None, log_level: LogLevel = "INFO") -> None:
    """Run an archiver (copies the events streams into PostgreSQL)."""
    s = settings(redis_url, **{"archiver.dsn": dsn})
    log.configure(log_level)
    runner.tune_gc_for_bulk()
    _serve(runner.build_archiver, s, 5.0)


def notifier(redis_url: RedisUrl = None, log_level: LogLevel = "INFO") -> None:
    """Run a notifier: failure alerts and completion webhooks (docs/tasks.md)."""
    s = settings(redis_url)
    log.configure(log_level)
    _serve(runner.build_notifier, s, 5.0)


def api(redis_url: RedisUrl = None, host: str | None = None, port: int | None = None,
        dev_mode: Annotated[bool, typer.Option(help="no API keys (never in production)")]
        = False, log_level: LogLevel = "INFO") -> None:
    """Serve the REST API (uvicorn, one process)."""
    import uvicorn

    s = settings(redis_url, **{"api.host": host, "api.port": port,
                               "api.dev_mode": True if dev_mode else None})
    log.configure(log_level)
    for name, value in (("redis.url", s.redis.url), ("api.dev_mode", s.api.dev_mode)):
        os.environ[f"RSCHED_{name.upper().replace('.', '__')}"] = str(value)
    # by import string: rsched never imports api (api imports rsched)
    uvicorn.run("api.app:app_from_env", factory=True, host=s.api.host, port=s.api.port,
                log_level=log_level.lower(), lifespan="on")


async def seed_demo(s: Settings) -> list[str]:
    """Create or refresh the demo jobs (by name, like `rsched apply`); their names."""
    desired = jobfile.load(DEMO_JOBS, "default")
    client = await Client.connect(s)
    try:
        plan = await make_plan(client, "default", desired, prune=False)
        outcome = await carry_out(client, plan, desired)
        if outcome.errors:
            raise RschedError("; ".join(outcome.errors))
        return [d.name or "" for d in desired] + [await _seed_demo_http(client, s)]
    finally:
        await client.close()


async def _seed_demo_http(client: Client, s: Settings) -> str:
    """A cron HTTP job against the dev API's own /healthz (the built-in endpoint that
    answers), every 10 seconds; created once, pointed at this run's port each start."""
    name = "demo-http"
    job = JobDef(name=name, http=HttpTask(url=f"http://{s.api.host}:{s.api.port}/healthz"),
                 schedule=Cron(expr="*/10 * * * * *"), labels={"demo": "true"})
    held = (await client.named_jobs("default")).get(name)
    if held is None:
        await client.schedule(job)
    elif held.spec.http != job.http:
        await client.update(held.id, job, held.version)
    return name


def dev(redis_url: RedisUrl = None, log_level: LogLevel = "INFO", module: Modules = None,
        demo: Annotated[bool, typer.Option(
            help="also seed demo jobs: every second, one that dead-letters, a cron HTTP job")
        ] = False
        ) -> None:
    """Everything in one process for a first try: Redis and PostgreSQL (reachable ones,
    kept to the key prefix `rsched-dev` and the schema `rsched_dev`, or private ones
    started from the installed binaries), a scheduler, a worker, an archiver, an
    example job that prints every second, and the API and dashboard in dev mode (no keys)
    on api.port (8000, or a free port when it is taken)."""
    s = settings(redis_url)
    log.configure(log_level)
    stores = dev_stores(s.redis.url, s.redis.prefix, s.archiver.dsn)
    modules = list(dict.fromkeys(["rsched.examples", *s.worker.modules, *(module or [])]))
    for line in stores.lines:
        typer.echo(f"rsched dev: {line}")
    port = s.api.port if s.api.port and port_free(s.api.host, s.api.port) else free_port()
    s = settings(None, **{"redis.url": s.redis.url, **stores.overrides,
                          "worker.modules": modules, "api.dev_mode": True, "api.port": port})

    async def go() -> None:
        example = await runner.ensure_example(s)
        typer.echo(f"rsched dev: example job {example!r} (examples.hello every second);"
                   f" task modules: {', '.join(modules)}")
        if demo:
            typer.echo(f"rsched dev: demo jobs {', '.join(await seed_demo(s))}")
        roles = await _dev_roles(s, stores.schema)
        runner.export_settings(s)
        api = runner.ApiServer(s.api.host, s.api.port)
        typer.echo(f"rsched dev: dashboard and API (dev mode, no keys): {api.url}")
        await runner.run_until_signal([*roles, api], 2.0)

    try:
        run(go())
    finally:
        stores.cleanup()


async def _dev_roles(s: Settings, schema: str | None) -> list[Any]:
    roles: list[Any] = [await runner.build_scheduler(s),
                        *await runner.worker_components(s, notify=True)]
    if s.archiver.dsn:
        try:
            if schema:
                await runner.ensure_schema(s.archiver.dsn, schema)
            roles.append(await runner.build_archiver(s))
        except RschedError as exc:
            typer.echo(f"archive unavailable ({exc}); running without it", err=True)
    return roles
