"""The `rsched` command line (Typer): roles and admin verbs.

Owns: argument parsing and human output. Each command builds Settings, configures
logging and calls asyncio.run(...). Must not: hold scheduling or execution logic.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn, TypeVar
from urllib.parse import urlparse

import msgspec
import typer
from redis.exceptions import ConnectionError as RedisConnectionError

from rsched import log, runner
from rsched.client import Client
from rsched.devservers import RedisServer, reachable
from rsched.errors import RschedError
from rsched.models import Cron, Every, Schedule
from rsched.settings import Settings

app = typer.Typer(help="rsched: Redis-native distributed job scheduler", no_args_is_help=True)
jobs_app = typer.Typer(help="Inspect and control jobs", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")

T = TypeVar("T")
RedisUrl = Annotated[str | None, typer.Option("--redis-url", envvar="RSCHED_REDIS__URL",
                                              help="Redis URL")]


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


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except RschedError as exc:
        _fail(str(exc), 1)
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
           concurrency: int | None = None, log_level: str = "INFO") -> None:
    """Run a worker (executes runs of the given queues)."""
    s = _settings(redis_url, **{"worker.queues": queues.split(",") if queues else None,
                                "worker.modules": module, "worker.concurrency": concurrency})
    log.configure(log_level)

    async def go() -> None:
        w = await runner.build_worker(s)
        await runner.run_until_signal([w], s.worker.grace_s)

    _run(go())
    runner.exit_abandoning_task_threads()


@app.command()
def dev(redis_url: RedisUrl = None, log_level: str = "INFO") -> None:
    """Everything in one process for a first try: Redis (reachable or private),
    a scheduler, a worker and an example job that prints every second."""
    examples = {"worker.modules": ["rsched.examples"]}
    s = _settings(redis_url, **examples)
    log.configure(log_level)
    private: RedisServer | None = None
    url = urlparse(s.redis.url)
    if url.scheme == "redis" and not reachable(url.hostname or "127.0.0.1", url.port or 6379):
        private = RedisServer().start()
        typer.echo(f"started a private redis-server at {private.url}")
        s = _settings(private.url, **examples)

    async def go() -> None:
        await runner.seed_example(s)
        sched = await runner.build_scheduler(s)
        work = await runner.build_worker(s)
        await runner.run_until_signal([sched, work], 2.0)

    try:
        _run(go())
    finally:
        if private is not None:
            private.cleanup()


# -- jobs ------------------------------------------------------------------------------
def _print(obj: Any) -> None:
    typer.echo(json.dumps(msgspec.to_builtins(obj), indent=2, default=str))


@jobs_app.command("list")
def jobs_list(redis_url: RedisUrl = None, limit: int = 50, after: str = "") -> None:
    """List job ids (pass the last one as --after for the next page)."""
    for job_id in _with_client(_settings(redis_url), lambda c: c.list_jobs(after=after, limit=limit)):
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


@jobs_app.command("preview")
def jobs_preview(cron: str | None = None, tz: str = "UTC", every_s: float | None = None,
                 count: int = 5, redis_url: RedisUrl = None) -> None:
    """Print the next fire instants of a cron or interval schedule."""
    sched: Schedule
    if cron is not None and every_s is None:
        sched = Cron(expr=cron, tz=tz)
    elif every_s is not None and cron is None and every_s > 0:
        sched = Every(every_ms=int(every_s * 1000))
    else:
        _fail("give exactly one of --cron or --every-s (> 0)")
    for ms in _with_client(_settings(redis_url), lambda c: c.preview(sched, count)):
        typer.echo(_iso(ms))


@app.command()
def dead(redis_url: RedisUrl = None, limit: int = 20) -> None:
    """List dead-lettered runs, newest first."""
    _print(_with_client(_settings(redis_url), lambda c: c.dead_letters(limit)))


def main() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is optional off Linux
        pass
    app(prog_name="rsched")
