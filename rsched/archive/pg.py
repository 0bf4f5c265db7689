"""PostgreSQL plumbing of the archive: connections, versioned migrations, runs partitions
and retention.

Owns: DDL, the migrations table, and retention (which keeps each job's fired marks before
its runs go). Must not: touch Redis or interpret events (archiver.py writes rows,
history.py reads them).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import resources

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from rsched.errors import ArchiveError

log = logging.getLogger(__name__)
# pg_advisory_xact_lock key serialising concurrent `rsched migrate` runs ("rsch").
MIGRATION_LOCK = 0x72736368
# pg_advisory_xact_lock key serialising retention runs ("rscr").
RETENTION_LOCK = 0x72736372
_PARTITION = re.compile(r"^runs_(\d{8})$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    out = []
    for entry in resources.files("rsched.archive.migrations").iterdir():
        m = re.match(r"^(\d{4})_(\w+)\.sql$", entry.name)
        if m:
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text()))
    return sorted(out, key=lambda mig: mig.version)


async def connect(dsn: str) -> psycopg.AsyncConnection[tuple[object, ...]]:
    try:
        # autocommit: writers group statements with conn.transaction() (a real BEGIN/COMMIT);
        # an implicit transaction left open would turn those into savepoints never committed.
        # synchronous_commit on whatever the server's default: the archiver acks events in
        # Redis once COMMIT returns, so COMMIT must mean durable (with it off, a PostgreSQL
        # crash loses the last commits, whose events are already acked: lost for good)
        # options given in the DSN (e.g. a search_path) are kept, not replaced
        given = str(conninfo_to_dict(dsn).get("options") or "")
        return await psycopg.AsyncConnection.connect(
            dsn, connect_timeout=5, autocommit=True,
            options=f"{given} -c synchronous_commit=on".strip())
    except psycopg.OperationalError as exc:
        raise ArchiveError(f"cannot connect to PostgreSQL: {_one_line(exc)}") from exc
    except psycopg.ProgrammingError as exc:  # not a DSN at all (the DSN is not echoed:
        # it may hold a password)
        raise ArchiveError(f"the archive DSN (--dsn, RSCHED_ARCHIVER__DSN) is not a"
                           f" PostgreSQL connection string: {_one_line(exc)}") from exc


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def with_schema(dsn: str, schema: str) -> str:
    """``dsn`` with ``schema`` first on its search_path (``ensure_schema`` creates it)."""
    params = conninfo_to_dict(dsn)
    params["options"] = f"{params.get('options') or ''} -c search_path={schema}".strip()
    return make_conninfo("", **params)


async def ensure_schema(conn: psycopg.AsyncConnection[tuple[object, ...]], schema: str) -> None:
    await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


async def migrate(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> list[str]:
    """Apply pending migrations in order, each recorded; returns the names applied."""
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS rsched_migrations (version integer PRIMARY KEY,"
            " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        cur = await conn.execute("SELECT version FROM rsched_migrations")
        done = {row[0] for row in await cur.fetchall()}
        for mig in migrations():
            if mig.version in done:
                continue
            await conn.execute(mig.sql.encode())
            await conn.execute("INSERT INTO rsched_migrations (version, name) VALUES (%s, %s)",
                               (mig.version, mig.name))
            applied.append(f"{mig.version:04d}_{mig.name}")
    return applied


def partition_name(day: date) -> str:
    return f"runs_{day:%Y%m%d}"


async def partitions(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> list[date]:
    cur = await conn.execute(
        # 'runs'::regclass: the runs table on this connection's search_path, not one in
        # another schema of the same database (`rsched dev` keeps to a schema of its own)
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'runs'::regclass")
    days = []
    for (name,) in await cur.fetchall():
        m = _PARTITION.match(str(name))
        if m:
            days.append(datetime.strptime(m.group(1), "%Y%m%d").date())
    return sorted(days)


async def ensure_partitions(conn: psycopg.AsyncConnection[tuple[object, ...]], today: date,
                            back_days: int, ahead_days: int = 7) -> list[date]:
    """Create daily runs partitions for [today - back_days, today + ahead_days]."""
    have = set(await partitions(conn))
    created = []
    for offset in range(-back_days, ahead_days + 1):
        day = today + timedelta(days=offset)
        if day in have:
            continue
        stmt = sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF runs FOR VALUES FROM ({})"
                       " TO ({})").format(sql.Identifier(partition_name(day)),
                                          sql.Literal(_midnight(day)),
                                          sql.Literal(_midnight(day + timedelta(days=1))))
        try:
            async with conn.transaction():
                await conn.execute(stmt)
            created.append(day)
        except psycopg.errors.CheckViolation:
            # rows of that day already sit in the default partition; they stay there and
            # are removed by retention's DELETE on the default partition
            log.warning("runs partition %s not created: default partition holds its rows", day)
    return created


# Before runs leave the archive, what they say about their job is kept on its row: the
# highest run number and the latest scheduled slot with when it fired (migration 0003), so
# that a rebuild continues the job's counter and schedule after retention took every run
# of it (rebuild.py reads these together with the retained runs). A slot counts once its
# queued event was archived: `enqueued_at` and run-now's `manual` come with that event
# (rebuild's own query of the runs needs `enqueued_at` too).
KEEP_JOB_MARKS = """
UPDATE jobs SET
  last_seq = GREATEST(jobs.last_seq, old.seq),
  last_slot_at = GREATEST(jobs.last_slot_at, old.slot_at),
  last_slot_enqueued_at = CASE WHEN jobs.last_slot_at IS NULL OR old.slot_at > jobs.last_slot_at
                               THEN old.enqueued_at ELSE jobs.last_slot_enqueued_at END
FROM (SELECT job_id, max(seq) AS seq, max(slot_at) FILTER (WHERE fired) AS slot_at,
             (array_agg(enqueued_at ORDER BY slot_at DESC) FILTER (WHERE fired))[1]
               AS enqueued_at
      FROM (SELECT job_id, seq, slot_at, enqueued_at,
                   NOT manual AND enqueued_at IS NOT NULL AS fired
            FROM runs WHERE slot_at < %s) AS r
      GROUP BY job_id) AS old
WHERE jobs.job_id = old.job_id
"""


async def drop_old_partitions(conn: psycopg.AsyncConnection[tuple[object, ...]], today: date,
                              retention_days: int) -> list[date]:
    """Drop partitions wholly older than the retention window; trim the default one and
    the skip decisions. The dropped runs' job marks are kept first, in the same
    transaction, with writes into what is dropped held off until the end."""
    if retention_days < 1:  # settings bound it too: 0 or less would drop today's runs
        raise ArchiveError(f"retention of {retention_days} day(s) refused: must be >= 1")
    cutoff = today - timedelta(days=retention_days)
    async with conn.transaction():
        # every archiver runs retention: one at a time, each listing partitions under the lock
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (RETENTION_LOCK,))
        dropped = [day for day in await partitions(conn) if day < cutoff]
        # No write into what goes until it is gone: a late run (a retry of an old slot)
        # committed after the marks were read would leave without them. Readers go on.
        # Taken before any jobs row, as an archiver's transaction writes runs before jobs:
        # waiting here for a late run's writer cannot deadlock with it.
        going = [partition_name(day) for day in dropped] + ["runs_default"]
        await conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(
            sql.SQL(", ").join(map(sql.Identifier, going))))
        await conn.execute(KEEP_JOB_MARKS, (_midnight(cutoff),))
        for day in dropped:
            await conn.execute(sql.SQL("DROP TABLE {}").format(
                sql.Identifier(partition_name(day))))
        await conn.execute("DELETE FROM runs_default WHERE slot_at < %s", (_midnight(cutoff),))
        await conn.execute("DELETE FROM skips WHERE at < %s", (_midnight(cutoff),))
    if dropped:
        log.info("retention dropped runs partitions %s", [str(d) for d in dropped])
    return dropped


async def apply_retention(conn: psycopg.AsyncConnection[tuple[object, ...]], now: datetime,
                          retention_days: int) -> list[date]:
    today = now.astimezone(UTC).date()
    dropped = await drop_old_partitions(conn, today, retention_days)
    await ensure_partitions(conn, today, back_days=min(retention_days, 3))
    return dropped


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
