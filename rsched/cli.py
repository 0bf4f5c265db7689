"""The `rsched` command line (Typer): roles and admin verbs.

Owns: argument parsing and human output. Each command builds Settings, configures
logging and calls asyncio.run(...). Must not: hold scheduling or execution logic.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn, TypeVar

import msgspec
import psycopg
import typer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError as RedisResponseError

from rsched import limits, log
from rsched.archive import history, pg
from rsched.archive.rebuild import rebuild as rebuild_from
from rsched.client import Client
from rsched.devservers import dev_stores
from rsched.engine import Engine
from rsched.errors import ArchiveError, ConfigError, RschedError, ValidationError
from rsched.models import Cron, Every, Role, RunStatus, Schedule
from rsched.roles import runner
from rsched.settings import Settings
from rsched.timing import validate_schedule

app = typer.Typer(help="rsched: Redis-native distributed job scheduler", no_args_is_help=True,
                  rich_markup_mode="markdown")  # markdown: docstring lines reflow
jobs_app = typer.Typer(help="Inspect and control jobs", no_args_is_help=True,
                       rich_markup_mode="markdown")
app.add_typer(jobs_app, name="jobs")

T = TypeVar("T")
RedisUrl = Annotated[str | None, typer.Option("--redis-url", envvar="RSCHED_REDIS__URL",
                                              help="Redis URL")]

Limit = Annotated[int, typer.Option(min=1, max=1000, help="how many to print")]


def _settings(redis_url: str | None = None, **overrides: Any) -> Settings:
    extra = {k: v for k, v in overrides.items() if v is not None}
    if redis_url:
        extra["redis.url"] = redis_url
    try:
        return Settings.from_env(env_file=".env", overrides=extra)
    except RschedError as exc:
        _fail(str(exc))


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _run(coro: Coroutine[Any, Any, T], command: str = "") -> T:
    """Run a command's coroutine; errors become one line and the exit code that
    docs/decisions.md lists: 2 bad input, 1 other rsched errors, 3 Redis, 4 PostgreSQL."""
    try:
        return asyncio.run(coro)
    except (ConfigError, ValidationError) as exc:
        _fail(str(exc), 2)
    except RschedError as exc:
        _fail(str(exc), 1)
    except psycopg.Error as exc:
        hint = "" if command == "migrate" else " (has `rsched migrate` run?)"
        _fail(f"{command or 'rsched'}: PostgreSQL: {' '.join(str(exc).split())}{hint}", 4)
    except RedisResponseError as exc:
        if "DB index" not in str(exc):
            raise
        _fail(f"RSCHED_REDIS__URL (--redis-url): {exc}; this server has fewer databases", 2)
    except (RedisConnectionError, OSError) as exc:
        _fail(f"cannot reach Redis: {exc}", 3)


def _iso(ms: int | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _with_client(settings: Settings, fn: Callable[[Client], Awaitable[T]]) -> T:
    async def go() -> T:
        client = await Client.connect(settings)
        try:
            return await fn(client)
        finally:
            await client.close()

    return _run(go())


# -- roles -----------------------------------------------------------------------------
@app.command()
def scheduler(redis_url: RedisUrl = None, log_level: str = "INFO") -> None:
    """Run a scheduler (leases shards, fires due slots)."""
    s = _settings(redis_url)
    log.configure(log_level)

    async def go() -> None:
        await runner.run_until_signal([await runner.build_scheduler(s)], 1.0)

    _run(go())


@app.command()
def worker(redis_url: RedisUrl = None, queues: str | None = None,
           module: Annotated[list[str] | None, typer.Option(help="task module to import")] = None,
           concurrency: int | None = None, log_level: str = "INFO",
           allow_shell: Annotated[bool, typer.Option(
               "--allow-shell", help="run shell tasks (and read the shell queues)")] = False,
           secrets_file: Annotated[str | None, typer.Option(
               help="secrets for HTTP and shell tasks (JSON or KEY=VALUE)")] = None) -> None:
    """Run a worker (executes runs of the given queues)."""
    s = _settings(redis_url, **{"worker.queues": queues.split(",") if queues else None,
                                "worker.modules": module, "worker.concurrency": concurrency,
                                "worker.allow_shell": allow_shell or None,
                                "worker.secrets_file": secrets_file})
    log.configure(log_level)

    async def go() -> None:
        w = await runner.build_worker(s)
        await runner.run_until_signal([w], s.worker.grace_s)

    code = 0
    try:
        _run(go())
    except typer.Exit as exc:
        code = exc.exit_code
        raise
    finally:  # a crashed worker exits non-zero even with task threads left behind
        runner.exit_abandoning_task_threads(code=code)


@app.command()
def dev(redis_url: RedisUrl = None, log_level: str = "INFO",
        module: Annotated[list[str] | None, typer.Option(
            help="task module to import (also RSCHED_WORKER__MODULES)")] = None) -> None:
    """Everything in one process for a first try: Redis and PostgreSQL (reachable ones,
    kept to the key prefix `rsched-dev` and the schema `rsched_dev`, or private ones
    started from the installed binaries), a scheduler, a worker, an archiver and an
    example job that prints every second."""
    s = _settings(redis_url)
    log.configure(log_level)
    stores = dev_stores(s.redis.url, s.redis.prefix, s.archiver.dsn)
    modules = list(dict.fromkeys(["rsched.examples", *s.worker.modules, *(module or [])]))
    for line in stores.lines:
        typer.echo(f"rsched dev: {line}")
    s = _settings(None, **{"redis.url": s.redis.url, **stores.overrides,
                           "worker.modules": modules})

    async def go() -> None:
        example = await runner.ensure_example(s)
        typer.echo(f"rsched dev: example job {example!r} (examples.hello every second);"
                   f" task modules: {', '.join(modules)}")
        roles: list[Any] = [await runner.build_scheduler(s), await runner.build_worker(s)]
        if s.archiver.dsn:
            try:
                if stores.schema:
                    await runner.ensure_schema(s.archiver.dsn, stores.schema)
                roles.append(await runner.build_archiver(s))
            except RschedError as exc:
                typer.echo(f"archive unavailable ({exc}); running without it", err=True)
        await runner.run_until_signal(roles, 2.0)

    try:
        _run(go())
    finally:
        stores.cleanup()


# -- jobs ------------------------------------------------------------------------------
def _print(obj: Any) -> None:
    typer.echo(json.dumps(msgspec.to_builtins(obj), indent=2, default=str))


@jobs_app.command("list")
def jobs_list(redis_url: RedisUrl = None, limit: Limit = 50, after: str = "") -> None:
    """List job ids (pass the last one as --after for the next page)."""
    ids = _with_client(_settings(redis_url), lambda c: c.list_jobs(after=after, limit=limit))
    for job_id in ids:
        typer.echo(job_id)


@jobs_app.command("show")
def jobs_show(job_id: str, redis_url: RedisUrl = None) -> None:
    """Show a job and its recent runs."""

    async def go(c: Client) -> Any:
        return {"job": await c.get(job_id), "runs": await c.runs(job_id, 10)}

    _print(_with_client(_settings(redis_url), go))


def _verb(name: str, help_text: str) -> None:
    def command(job_id: str, redis_url: RedisUrl = None) -> None:
        result = _with_client(_settings(redis_url), lambda c: getattr(c, name)(job_id))
        typer.echo(f"{name.replace('_', '-')} {job_id}: ok" + (f" ({result})" if result else ""))

    command.__doc__ = help_text
    jobs_app.command(name.replace("_", "-"))(command)


_verb("pause", "Pause a job (no fires until resumed).")
_verb("resume", "Resume a paused job.")
_verb("cancel", "Cancel a job; a running run is signalled to stop.")
_verb("run_now", "Enqueue one extra run of a job at once.")


@app.command()
def status(redis_url: RedisUrl = None) -> None:
    """The deployment at a glance, as JSON: jobs due, queue and events stream lengths,
    archive lag (age of the oldest event not yet in PostgreSQL), and the live workers and
    schedulers with the ms since their last heartbeat."""
    _print(_with_client(_settings(redis_url), lambda c: c.status()))


@jobs_app.command("preview")
def jobs_preview(cron: str | None = None, tz: str = "UTC",
                 every_s: Annotated[float | None, typer.Option(
                     help="interval in seconds, 0.001 .. 10 years")] = None,
                 count: Annotated[int, typer.Option(help="how many, 1..1000")] = 5,
                 redis_url: RedisUrl = None) -> None:
    """Print the next fire instants of a cron or interval schedule."""
    sched = _preview_schedule(cron, tz, every_s, count)
    for ms in _with_client(_settings(redis_url), lambda c: c.preview(sched, count)):
        typer.echo(_iso(ms))


def _preview_schedule(cron: str | None, tz: str, every_s: float | None, count: int) -> Schedule:
    """The schedule to preview, checked before any connection (bad input exits 2)."""
    if (cron is None) == (every_s is None):
        _fail("give exactly one of --cron or --every-s")
    try:
        limits.check_count(count)
        sched: Schedule = (Cron(expr=cron, tz=tz) if cron is not None else
                           Every(every_ms=limits.every_ms_of_seconds(every_s or 0.0)))
        validate_schedule(sched, int(time.time() * 1000))
    except ValidationError as exc:
        _fail(str(exc))
    return sched


# -- archive ---------------------------------------------------------------------------
Dsn = Annotated[str | None, typer.Option("--dsn", envvar="RSCHED_ARCHIVER__DSN",
                                         help="PostgreSQL DSN of the archive")]
DbConn = psycopg.AsyncConnection[Any]


def _with_db(command: str, settings: Settings, fn: Callable[[DbConn], Awaitable[T]]) -> T:
    async def go() -> T:
        try:
            conn = await pg.connect(settings.archiver.dsn)
        except ArchiveError as exc:
            raise ArchiveError(f"{command}: {exc}") from exc
        try:
            result = await fn(conn)
            await conn.commit()
            return result
        finally:
            await conn.close()

    return _run(go(), command)


@app.command()
def migrate(dsn: Dsn = None) -> None:
    """Apply pending archive migrations (idempotent) and create runs partitions."""
    s = _settings(None, **{"archiver.dsn": dsn})

    async def go(conn: DbConn) -> list[str]:
        applied = await pg.migrate(conn)
        await pg.apply_retention(conn, datetime.now(UTC), s.archiver.retention_days)
        return applied

    applied = _with_db("migrate", s, go)
    typer.echo(f"applied: {', '.join(applied)}" if applied else "archive schema up to date")


@app.command()
def retention(dsn: Dsn = None, days: int | None = None) -> None:
    """Drop runs partitions older than the retention window; create future ones."""
    if days is not None and days < 1:
        _fail("--days must be >= 1")
    s = _settings(None, **{"archiver.dsn": dsn, "archiver.retention_days": days})
    dropped = _with_db("retention", s, lambda c: pg.apply_retention(
        c, datetime.now(UTC), s.archiver.retention_days))
    typer.echo(f"dropped partitions: {', '.join(map(str, dropped)) or 'none'}")


@app.command()
def archiver(redis_url: RedisUrl = None, dsn: Dsn = None, log_level: str = "INFO") -> None:
    """Run an archiver (copies the events streams into PostgreSQL)."""
    s = _settings(redis_url, **{"archiver.dsn": dsn})
    log.configure(log_level)
    runner.tune_gc_for_bulk()

    async def go() -> None:
        await runner.run_until_signal([await runner.build_archiver(s)], 5.0)

    _run(go())


@app.command()
def rebuild(redis_url: RedisUrl = None, dsn: Dsn = None) -> None:
    """Recreate jobs and unfinished runs in Redis from the archive (after Redis lost data)."""
    s = _settings(redis_url, **{"archiver.dsn": dsn})

    async def go(conn: DbConn) -> Any:
        engine = await Engine.connect(s)
        try:
            return await rebuild_from(engine, conn, await engine.clock().now_ms())
        finally:
            await engine.close()

    report = _with_db("rebuild", s, go)
    typer.echo(f"restored {report.jobs_restored} job(s), {report.jobs_present} already in"
               f" Redis, re-queued {report.runs_requeued} unfinished run(s)")


def _ms_of(iso: str | None) -> int | None:
    if iso is None:
        return None
    try:
        t = datetime.fromisoformat(iso)
    except ValueError:
        _fail(f"not an ISO 8601 time: {iso!r}")
    return int((t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp() * 1000)


@jobs_app.command("history")
def jobs_history(job_id: str, redis_url: RedisUrl = None, dsn: Dsn = None,
                 status: RunStatus | None = None, limit: Limit = 20,
                 cursor: str | None = None,
                 since: Annotated[str | None, typer.Option(help="slots from (ISO 8601)")] = None,
                 until: Annotated[str | None, typer.Option(help="slots before (ISO 8601)")] = None,
                 ) -> None:
    """A job's archived runs (newest first, --cursor for older pages), its stats, versions
    and its latest skipped slots."""
    s = _settings(redis_url, **{"archiver.dsn": dsn})
    since_ms, until_ms = _ms_of(since), _ms_of(until)

    async def go(conn: DbConn) -> Any:
        versions = await history.versions(conn, job_id)
        if not versions:  # every job's creation is archived as its version 1
            return None
        page = await history.job_runs(conn, job_id, status=status, cursor=cursor, limit=limit,
                                      since_ms=since_ms, until_ms=until_ms)
        return {"runs": page.runs, "next_cursor": page.cursor,
                "stats": await history.stats(conn, job_id), "versions": versions,
                "skips": await history.skips(conn, job_id, limit=10)}

    doc = _with_db("jobs history", s, go)
    if doc is None:
        _fail(f"job {job_id!r} is not in the archive (unknown, or created too recently to be"
              " archived yet: see the archive lag in `rsched status`)", 1)
    _print(doc)


@app.command()
def dead(redis_url: RedisUrl = None, limit: Limit = 20) -> None:
    """List dead-lettered runs, newest first."""
    _print(_with_client(_settings(redis_url), lambda c: c.dead_letters(limit)))


# -- API ------------------------------------------------------------------------------
keys_app = typer.Typer(help="API keys of the REST API (each bound to a tenant and a role)",
                       no_args_is_help=True, rich_markup_mode="markdown")
app.add_typer(keys_app, name="keys")


@app.command()
def api(redis_url: RedisUrl = None, host: str | None = None, port: int | None = None,
        dev_mode: Annotated[bool, typer.Option(help="no API keys (never in production)")]
        = False, log_level: str = "INFO") -> None:
    """Serve the REST API (uvicorn, one process)."""
    import uvicorn

    s = _settings(redis_url, **{"api.host": host, "api.port": port,
                                "api.dev_mode": True if dev_mode else None})
    log.configure(log_level)
    for name, value in (("redis.url", s.redis.url), ("api.dev_mode", s.api.dev_mode)):
        os.environ[f"RSCHED_{name.upper().replace('.', '__')}"] = str(value)
    # by import string: rsched never imports api (api imports rsched)
    uvicorn.run("api.app:app_from_env", factory=True, host=s.api.host, port=s.api.port,
                log_level=log_level.lower(), lifespan="on")


@keys_app.command("create")
def keys_create(tenant: str, role: Role = Role.WRITE, name: str = "",
                redis_url: RedisUrl = None) -> None:
    """Create a key; it is printed once and only its sha256 is stored."""

    async def go(e: Engine) -> str:
        key, token = await e.access.create_key(tenant, role, await e.clock().now_ms(), name)
        return f"{token}\nkey id {key.id}, tenant {key.tenant}, role {key.role.value}" \
               " (store the key now: it is not shown again)"

    typer.echo(_with_engine(_settings(redis_url), go))


@keys_app.command("list")
def keys_list(redis_url: RedisUrl = None) -> None:
    """List keys (id, tenant, role, created, revoked); never their secrets."""
    for k in _with_engine(_settings(redis_url), lambda e: e.access.list_keys()):
        revoked = f" revoked {_iso(k.revoked_ms)}" if k.revoked_ms else ""
        typer.echo(f"{k.id}  tenant={k.tenant}  role={k.role.value}  created "
                   f"{_iso(k.created_ms)}{revoked}  {k.name}".rstrip())


@keys_app.command("revoke")
def keys_revoke(key_id: str, redis_url: RedisUrl = None) -> None:
    """Revoke a key by id (the API refuses it within api.key_cache_s)."""

    async def go(e: Engine) -> bool:
        return await e.access.revoke_key(key_id, await e.clock().now_ms())

    if not _with_engine(_settings(redis_url), go):
        _fail(f"no key {key_id!r}", 1)
    typer.echo(f"revoked {key_id}")


def _with_engine(settings: Settings, fn: Callable[[Engine], Awaitable[T]]) -> T:
    async def go() -> T:
        engine = await Engine.connect(settings)
        try:
            return await fn(engine)
        finally:
            await engine.close()

    return _run(go())


def main() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is optional off Linux
        pass
    app(prog_name="rsched")
