"""What every `rsched` command shares: settings, exit codes, store sessions, options.

Owns: building Settings from options and the environment, mapping errors to the exit
codes of docs/decisions.md (0 ok, 1 operation failed, 2 bad input, 3 Redis unreachable,
4 PostgreSQL error) with one line on stderr and no traceback, running a command's
coroutine with a Client, an Engine or an archive connection, and the shared typer options.
Must not: hold scheduling logic or format output (output.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, NoReturn, TypeVar

import psycopg
import typer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError as RedisResponseError

from rsched.archive import pg
from rsched.client import Client
from rsched.engine import Engine
from rsched.errors import ArchiveError, ConfigError, RschedError, ValidationError
from rsched.settings import Settings

T = TypeVar("T")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REDIS, EXIT_PG = 0, 1, 2, 3, 4

RedisUrl = Annotated[str | None, typer.Option("--redis-url", envvar="RSCHED_REDIS__URL",
                                              help="Redis URL")]
Dsn = Annotated[str | None, typer.Option("--dsn", envvar="RSCHED_ARCHIVER__DSN",
                                         help="PostgreSQL DSN of the archive")]
Limit = Annotated[int, typer.Option(min=1, max=1000, help="how many to print")]
Json = Annotated[bool, typer.Option("--json", help="machine output (docs/cli.md)")]
Tenant = Annotated[str, typer.Option(help="the tenant whose jobs to act on")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]
DbConn = psycopg.AsyncConnection[Any]


def settings(redis_url: str | None = None, **overrides: Any) -> Settings:
    extra = {k: v for k, v in overrides.items() if v is not None}
    if redis_url:
        extra["redis.url"] = redis_url
    try:
        return Settings.from_env(env_file=".env", overrides=extra)
    except RschedError as exc:
        fail(str(exc))


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def checked(fn: Callable[[], T]) -> T:
    """Run an input check before any connection: a ValidationError exits 2."""
    try:
        return fn()
    except ValidationError as exc:
        fail(str(exc))


def run(coro: Coroutine[Any, Any, T], command: str = "") -> T:
    """Run a command's coroutine; errors become one line and their exit code."""
    try:
        return asyncio.run(coro)
    except (ConfigError, ValidationError) as exc:
        fail(str(exc), EXIT_USAGE)
    except RschedError as exc:
        fail(str(exc), EXIT_FAILED)
    except psycopg.Error as exc:
        hint = "" if command == "migrate" else " (has `rsched migrate` run?)"
        fail(f"{command or 'rsched'}: PostgreSQL: {' '.join(str(exc).split())}{hint}", EXIT_PG)
    except RedisResponseError as exc:
        if "DB index" not in str(exc):
            raise
        fail(f"RSCHED_REDIS__URL (--redis-url): {exc}; this server has fewer databases",
             EXIT_USAGE)
    except (RedisConnectionError, OSError) as exc:
        fail(f"cannot reach Redis: {exc}", EXIT_REDIS)


def with_client(s: Settings, fn: Callable[[Client], Awaitable[T]]) -> T:
    async def go() -> T:
        client = await Client.connect(s)
        try:
            return await fn(client)
        finally:
            await client.close()

    return run(go())


def with_engine(s: Settings, fn: Callable[[Engine], Awaitable[T]]) -> T:
    async def go() -> T:
        engine = await Engine.connect(s)
        try:
            return await fn(engine)
        finally:
            await engine.close()

    return run(go())


def with_db(command: str, s: Settings, fn: Callable[[DbConn], Awaitable[T]]) -> T:
    async def go() -> T:
        try:
            conn = await pg.connect(s.archiver.dsn)
        except ArchiveError as exc:
            raise ArchiveError(f"{command}: {exc}") from exc
        try:
            result = await fn(conn)
            await conn.commit()
            return result
        finally:
            await conn.close()

    return run(go(), command)
