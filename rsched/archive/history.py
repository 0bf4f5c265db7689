"""Reading run history: recent state from Redis, anything older from PostgreSQL.

Owns: history queries (keyset pagination, filters, per-job stats). Must not: write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import psycopg

from rsched.engine import Engine
from rsched.errors import ValidationError
from rsched.models import Run, RunStatus

_RUN_COLS = """run_id, job_id, queue, tenant, status, attempt, slot_at, enqueued_at, started_at,
finished_at, worker, error"""


class JobVersion(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    version: int
    task: str
    queue: str
    tenant: str
    created_ms: int
    state: str | None = None  # the job's state when this version was written


class Skip(msgspec.Struct, frozen=True, kw_only=True):
    """A slot the scheduler decided not to fire ("why didn't my job run?")."""

    job_id: str
    slot_ms: int
    why: str  # overlap | misfire
    missed: int  # slots skipped by this decision
    at_ms: int


class JobStats(msgspec.Struct, frozen=True, kw_only=True):
    runs: int
    finished: int
    succeeded: int
    success_rate: float | None  # succeeded / finished
    mean_ms: float | None  # duration of finished runs
    p95_ms: float | None
    last_failure: Run | None


@dataclass(frozen=True)
class Page:
    runs: list[Run]
    cursor: str | None  # pass back to get the next (older) page


def _ms(t: datetime | None) -> int | None:
    return None if t is None else int(t.timestamp() * 1000)


def _run(row: tuple[Any, ...]) -> Run:
    (run_id, job_id, queue, tenant, status, attempt, slot, enq, start, end, worker,
     error) = row
    return Run(id=run_id, job_id=job_id, queue=queue or "", tenant=tenant or "",
               status=RunStatus(status), attempt=attempt, slot_ms=_ms(slot) or 0,
               enqueued_ms=_ms(enq), started_ms=_ms(start), finished_ms=_ms(end), worker=worker,
               error=error)


def _decode_cursor(cursor: str) -> tuple[int, str]:
    ms, sep, run_id = cursor.partition("|")
    if not sep or not ms.isdigit():
        raise ValidationError(f"invalid cursor {cursor!r}")
    return int(ms), run_id


async def job_runs(conn: psycopg.AsyncConnection[Any], job_id: str, *,
                   status: RunStatus | None = None, since_ms: int | None = None,
                   until_ms: int | None = None, cursor: str | None = None,
                   limit: int = 50) -> Page:
    """Archived runs of a job, newest slot first, ``limit`` per page."""
    if not 1 <= limit <= 1000:
        raise ValidationError("limit must be within 1..1000")
    where = ["job_id = %s"]
    params: list[Any] = [job_id]
    if status is not None:
        where.append("status = %s")
        params.append(status.value)
    if since_ms is not None:
        where.append("slot_at >= to_timestamp(%s / 1000.0)")
        params.append(since_ms)
    if until_ms is not None:
        where.append("slot_at < to_timestamp(%s / 1000.0)")
        params.append(until_ms)
    if cursor:
        ms, run_id = _decode_cursor(cursor)
        where.append("(slot_at, run_id) < (to_timestamp(%s / 1000.0), %s)")
        params += [ms, run_id]
    query = (f"SELECT {_RUN_COLS} FROM runs WHERE {' AND '.join(where)}"
             " ORDER BY slot_at DESC, run_id DESC LIMIT %s")
    cur = await conn.execute(query.encode(), [*params, limit + 1])
    rows = [_run(r) for r in await cur.fetchall()]
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, f"{rows[-1].slot_ms}|{rows[-1].id}" if more else None)


async def recent_runs(engine: Engine, conn: psycopg.AsyncConnection[Any], job_id: str,
                      limit: int = 20) -> list[Run]:
    """Newest runs: live state from Redis where it still has them, the archive for the rest."""
    live = {r.id: r for r in await engine.query.job_runs(job_id, limit)}
    archived = (await job_runs(conn, job_id, limit=limit)).runs
    merged = {r.id: r for r in archived} | live
    return sorted(merged.values(), key=lambda r: (r.slot_ms, r.id), reverse=True)[:limit]


async def run(conn: psycopg.AsyncConnection[Any], run_id: str) -> Run | None:
    cur = await conn.execute(f"SELECT {_RUN_COLS} FROM runs WHERE run_id = %s".encode(),
                             (run_id,))
    row = await cur.fetchone()
    return None if row is None else _run(row)


async def versions(conn: psycopg.AsyncConnection[Any], job_id: str) -> list[JobVersion]:
    cur = await conn.execute(
        "SELECT job_id, version, task, queue, tenant, created_at, state FROM job_versions"
        " WHERE job_id = %s ORDER BY version", (job_id,))
    return [JobVersion(job_id=j, version=v, task=t, queue=q, tenant=tn, created_ms=_ms(c) or 0,
                       state=st)
            for j, v, t, q, tn, c, st in await cur.fetchall()]


async def skips(conn: psycopg.AsyncConnection[Any], job_id: str,
                limit: int = 50) -> list[Skip]:
    """The job's newest archived decisions not to fire a slot."""
    cur = await conn.execute(
        "SELECT job_id, slot_at, why, missed, at FROM skips WHERE job_id = %s"
        " ORDER BY ev_ms DESC, ev_seq DESC LIMIT %s", (job_id, limit))
    return [Skip(job_id=j, slot_ms=_ms(slot) or 0, why=why, missed=n, at_ms=_ms(at) or 0)
            for j, slot, why, n, at in await cur.fetchall()]


async def stats(conn: psycopg.AsyncConnection[Any], job_id: str) -> JobStats:
    cur = await conn.execute(
        "SELECT count(*), count(finished_at), count(*) FILTER (WHERE status = 'succeeded'),"
        " avg(duration_ms), percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms)"
        " FROM runs WHERE job_id = %s", (job_id,))
    total, finished, ok, mean, p95 = await cur.fetchone() or (0, 0, 0, None, None)
    cur = await conn.execute(
        f"SELECT {_RUN_COLS} FROM runs WHERE job_id = %s AND status IN"
        " ('failed', 'dead', 'timed_out', 'retrying') ORDER BY finished_at DESC NULLS LAST"
        " LIMIT 1".encode(), (job_id,))
    last = await cur.fetchone()
    return JobStats(runs=total, finished=finished, succeeded=ok,
                    success_rate=(ok / finished) if finished else None,
                    mean_ms=None if mean is None else float(mean),
                    p95_ms=None if p95 is None else float(p95),
                    last_failure=None if last is None else _run(last))
