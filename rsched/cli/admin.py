"""Administration: the archive's schema and retention, rebuilding Redis, API keys.

Owns: `rsched migrate`, `retention`, `rebuild` and `keys create|list|revoke`. Must not:
hold the archive's SQL (rsched/archive/) or format keys.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from rsched.archive import pg
from rsched.archive.rebuild import rebuild as rebuild_from
from rsched.cli.common import (
    EXIT_FAILED,
    DbConn,
    Dsn,
    Json,
    RedisUrl,
    fail,
    settings,
    with_db,
    with_engine,
)
from rsched.cli.output import emit_json, progress, table, when
from rsched.engine import Engine
from rsched.models import ApiKey, Role

keys_app = typer.Typer(help="API keys of the REST API (each bound to a tenant and a role)",
                       no_args_is_help=True, rich_markup_mode="markdown")


def migrate(dsn: Dsn = None) -> None:
    """Apply pending archive migrations (idempotent) and create runs partitions."""
    s = settings(None, **{"archiver.dsn": dsn})

    async def go(conn: DbConn) -> list[str]:
        applied = await pg.migrate(conn)
        await pg.apply_retention(conn, datetime.now(UTC), s.archiver.retention_days)
        return applied

    applied = with_db("migrate", s, go)
    typer.echo(f"applied: {', '.join(applied)}" if applied else "archive schema up to date")


def retention(dsn: Dsn = None, days: int | None = None) -> None:
    """Drop runs partitions older than the retention window; create future ones."""
    if days is not None and days < 1:
        fail("--days must be >= 1")
    s = settings(None, **{"archiver.dsn": dsn, "archiver.retention_days": days})

    async def go(conn: DbConn) -> list[Any]:
        with progress(0, "applying retention"):
            return await pg.apply_retention(conn, datetime.now(UTC), s.archiver.retention_days)

    dropped = with_db("retention", s, go)
    typer.echo(f"dropped partitions: {', '.join(map(str, dropped)) or 'none'}")


def rebuild(redis_url: RedisUrl = None, dsn: Dsn = None) -> None:
    """Recreate jobs and unfinished runs in Redis from the archive (after Redis lost data)."""
    s = settings(redis_url, **{"archiver.dsn": dsn})

    async def go(conn: DbConn) -> Any:
        engine = await Engine.connect(s)
        try:
            with progress(0, "rebuilding Redis from the archive"):
                return await rebuild_from(engine, conn, await engine.clock().now_ms())
        finally:
            await engine.close()

    report = with_db("rebuild", s, go)
    typer.echo(f"restored {report.jobs_restored} job(s), {report.jobs_present} already in"
               f" Redis, re-queued {report.runs_requeued} unfinished run(s)")


@keys_app.command("create")
def keys_create(tenant: str, role: Role = Role.WRITE, name: str = "",
                redis_url: RedisUrl = None) -> None:
    """Create a key; it is printed once and only its sha256 is stored."""

    async def go(e: Engine) -> str:
        key, token = await e.access.create_key(tenant, role, await e.clock().now_ms(), name)
        return f"{token}\nkey id {key.id}, tenant {key.tenant}, role {key.role.value}" \
               " (store the key now: it is not shown again)"

    typer.echo(with_engine(settings(redis_url), go))


@keys_app.command("list")
def keys_list(redis_url: RedisUrl = None, as_json: Json = False) -> None:
    """List keys (id, tenant, role, created, revoked); never their secrets."""
    keys: list[ApiKey] = with_engine(settings(redis_url), lambda e: e.access.list_keys())
    public = [{"id": k.id, "tenant": k.tenant, "role": k.role.value, "name": k.name,
               "created_ms": k.created_ms, "revoked_ms": k.revoked_ms} for k in keys]
    if as_json:
        emit_json(public)
        return
    table(None, ["ID", "TENANT", "ROLE", "NAME", "CREATED", "REVOKED"],
          [[k.id, k.tenant, k.role, k.name, when(k.created_ms), when(k.revoked_ms)]
           for k in keys])


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="key id (see keys list)")],
                redis_url: RedisUrl = None) -> None:
    """Revoke a key by id (the API refuses it within api.key_cache_s)."""

    async def go(e: Engine) -> bool:
        return await e.access.revoke_key(key_id, await e.clock().now_ms())

    if not with_engine(settings(redis_url), go):
        fail(f"no key {key_id!r}", EXIT_FAILED)
    typer.echo(f"revoked {key_id}")
