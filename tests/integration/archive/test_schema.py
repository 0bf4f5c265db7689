"""Migrations, partitions, retention and history reads on a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from rsched.archive import history, pg
from rsched.errors import ValidationError
from rsched.models import RunStatus

DAY = date(2026, 1, 10)


async def test_migrations_run_twice_are_a_no_op(archive_dsn: str, db: Any) -> None:
    conn = await pg.connect(archive_dsn)  # the fixture already migrated this database
    try:
        assert await pg.migrate(conn) == []
        await conn.commit()
    finally:
        await conn.close()
    rows = await (await db.execute("SELECT version, name FROM rsched_migrations")).fetchall()
    assert rows == [(1, "init"), (2, "skips"), (3, "job_marks"), (4, "job_meta")]


async def test_commits_are_durable_whatever_the_servers_default(archive_dsn: str) -> None:
    """The archiver acks events once COMMIT returns; the fixture's server runs with
    synchronous_commit off (fast tests), so rsched's connections must turn it back on or
    a PostgreSQL crash would lose commits whose events are already acked."""
    conn = await pg.connect(archive_dsn)
    try:
        server_default = await (await conn.execute(
            "SELECT boot_val, reset_val FROM pg_settings WHERE name = 'synchronous_commit'"
        )).fetchone()
        mine = await (await conn.execute("SHOW synchronous_commit")).fetchone()
    finally:
        await conn.close()
    assert server_default is not None and mine is not None
    assert mine[0] == "on", f"server default {server_default}"


async def test_retention_drops_whole_old_partitions(db: Any) -> None:
    created = await pg.ensure_partitions(db, DAY, back_days=40, ahead_days=2)
    assert len(created) == 43
    old_day = DAY - timedelta(days=35)
    await db.execute(
        "INSERT INTO runs (run_id, job_id, seq, status, attempt, slot_at, ev_ms, ev_seq)"
        " VALUES ('old:1', 'old', 1, 'succeeded', 1, %s, 1, 0),"
        "        ('new:1', 'new', 1, 'succeeded', 1, %s, 1, 0)",
        (datetime(old_day.year, old_day.month, old_day.day, 12, tzinfo=UTC),
         datetime(DAY.year, DAY.month, DAY.day, 12, tzinfo=UTC)))
    dropped = await pg.drop_old_partitions(db, DAY, retention_days=30)
    assert len(dropped) == 10 and old_day in dropped
    assert min(await pg.partitions(db)) == DAY - timedelta(days=30)
    rows = await (await db.execute("SELECT run_id FROM runs")).fetchall()
    assert rows == [("new:1",)]


async def test_retention_keeps_the_marks_of_a_run_written_while_it_runs(
        archive_dsn: str, db: Any) -> None:
    """A late run (a retry of an old slot) is being written into a partition retention is
    about to drop: retention waits for it and keeps its marks, or a rebuild would fire
    that slot again."""
    import asyncio

    from tests.support.procs import eventually

    await pg.ensure_partitions(db, DAY, back_days=40, ahead_days=0)
    old = datetime(DAY.year, DAY.month, DAY.day, 12, tzinfo=UTC) - timedelta(days=35)
    await db.execute("INSERT INTO jobs (job_id, state, ev_ms, ev_seq) VALUES ('j', 'active', 1, 0)")
    insert = ("INSERT INTO runs (run_id, job_id, seq, status, attempt, slot_at, enqueued_at,"
              " ev_ms, ev_seq) VALUES (%s, 'j', %s, 'succeeded', 1, %s, %s, 1, 0)")
    await db.execute(insert, ("j:1", 1, old, old))
    # its queued event never archived: run-now or not is unknown, so not a slot
    await db.execute(insert, ("j:3", 3, old + timedelta(hours=2), None))
    late, retention = await pg.connect(archive_dsn), await pg.connect(archive_dsn)
    try:
        async with late.transaction():
            await late.execute(insert, ("j:2", 2, old + timedelta(hours=1),
                                        old + timedelta(hours=1)))
            task = asyncio.create_task(pg.drop_old_partitions(retention, DAY, 30))

            async def waiting() -> bool:
                row = await (await db.execute(
                    "SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted",
                    (retention.info.backend_pid,))).fetchone()
                return bool(row[0])

            await eventually(waiting, "retention waiting for the late run's transaction")
        assert old.date() in await asyncio.wait_for(task, 30)
    finally:
        await late.close()
        await retention.close()
    row = await (await db.execute(
        "SELECT last_seq, last_slot_at FROM jobs WHERE job_id = 'j'")).fetchone()
    assert row == (3, old + timedelta(hours=1))
    assert (await (await db.execute("SELECT count(*) FROM runs")).fetchone())[0] == 0


async def _seed_runs(db: Any, n: int) -> None:
    await pg.ensure_partitions(db, DAY, back_days=1)
    base = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    for i in range(1, n + 1):
        status = "dead" if i % 4 == 0 else "succeeded"
        slot = base + timedelta(minutes=i)
        await db.execute(
            "INSERT INTO runs (run_id, job_id, seq, status, attempt, slot_at, enqueued_at,"
            " started_at, finished_at, error, ev_ms, ev_seq) VALUES (%s, 'j', %s, %s, 1, %s,"
            " %s, %s, %s, %s, 1, 0)",
            (f"j:{i}", i, status, slot, slot, slot, slot + timedelta(milliseconds=10 * i),
             "boom" if status == "dead" else None))


async def test_history_pages_filters_and_stats(db: Any) -> None:
    await _seed_runs(db, 10)
    first = await history.job_runs(db, "j", limit=4)
    assert [r.id for r in first.runs] == ["j:10", "j:9", "j:8", "j:7"]
    second = await history.job_runs(db, "j", limit=4, cursor=first.cursor)
    assert [r.id for r in second.runs] == ["j:6", "j:5", "j:4", "j:3"]
    third = await history.job_runs(db, "j", limit=4, cursor=second.cursor)
    assert [r.id for r in third.runs] == ["j:2", "j:1"] and third.cursor is None
    dead = await history.job_runs(db, "j", status=RunStatus.DEAD)
    assert [r.id for r in dead.runs] == ["j:8", "j:4"]
    base_ms = int(datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC).timestamp() * 1000)
    window = await history.job_runs(db, "j", since_ms=base_ms + 3 * 60_000,
                                    until_ms=base_ms + 5 * 60_000)
    assert [r.id for r in window.runs] == ["j:4", "j:3"]
    stats = await history.stats(db, "j")
    assert (stats.runs, stats.finished, stats.succeeded) == (10, 10, 8)
    assert stats.success_rate == 0.8 and stats.mean_ms == 55.0
    assert stats.last_failure is not None and stats.last_failure.id == "j:8"
    assert (await history.run(db, "j:3")).status is RunStatus.SUCCEEDED  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="invalid cursor"):
        await history.job_runs(db, "j", cursor="garbage")
