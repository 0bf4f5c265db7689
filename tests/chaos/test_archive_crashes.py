"""The archive survives a killed archiver and a stopped PostgreSQL: nothing lost, nothing
duplicated, and it catches up."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from rsched.archive import pg
from rsched.archive.archiver import Archiver
from rsched.clock import FakeClock
from rsched.devservers import PostgresServer
from rsched.engine import Engine
from rsched.models import Immediate, JobDef, RetryPolicy
from rsched.settings import ArchiverSettings
from rsched.tasks import TaskRegistry
from tests.support import system
from tests.support.procs import Roles, eventually

pytestmark = [pytest.mark.chaos, pytest.mark.pg]


def registry() -> TaskRegistry:
    reg = TaskRegistry()

    @reg.task(name="maybe")
    async def maybe(fail: bool) -> None:
        if fail:
            raise RuntimeError("planned failure")

    return reg


async def run_jobs(engine: Engine, clock: FakeClock, n: int, start: int = 0) -> list[str]:
    """Schedule and run n one-shot jobs (every 5th fails for good) with ticked roles."""
    reg = registry()
    c, s = system.client(engine, clock, reg), system.scheduler(engine, clock, batch=1000)
    w = system.worker(engine, clock, reg, concurrency=500, batch=500)
    await w.start()
    jobs = [await c.schedule(JobDef(id=f"job{i}", task="maybe", kwargs={"fail": i % 5 == 0},
                                    schedule=Immediate(), retry=RetryPolicy(max_attempts=1)))
            for i in range(start, start + n)]
    await system.fire_until_idle(s)
    while (await w.tick(block_ms=None)).started or w.inflight:
        await w.drain()
    return jobs


async def redis_statuses(engine: Engine, jobs: list[str]) -> dict[str, str]:
    return {r.id: r.status.value for j in jobs for r in await engine.query.job_runs(j)}


async def archived(dsn: str) -> dict[str, str]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        rows = await (await conn.execute("SELECT run_id, status FROM runs")).fetchall()
    return {r: st for r, st in rows}


async def test_archiver_killed_mid_batch_loses_and_duplicates_nothing(
        make_engine: Any, clock: FakeClock, archive_dsn: str, roles: Roles) -> None:
    engine = await make_engine()
    jobs = await run_jobs(engine, clock, 6000)
    expected = await redis_statuses(engine, jobs)
    first = roles.spawn("archiver", archiver__dsn=archive_dsn, archiver__batch=300,
                        archiver__flush_s=0.05, archiver__claim_idle_s=1)

    async def some_archived() -> bool:
        return 0 < len(await archived(archive_dsn)) < len(expected)

    await eventually(some_archived, "the first archiver to commit part of the events")
    first.signal(signal.SIGKILL)
    await first.wait_exit()
    partial = len(await archived(archive_dsn))
    roles.spawn("archiver", archiver__dsn=archive_dsn, archiver__batch=300,
                archiver__flush_s=0.05, archiver__claim_idle_s=1)

    async def complete() -> bool:
        return await archived(archive_dsn) == expected

    await eventually(complete, "the second archiver to archive everything", timeout_s=60)
    assert partial < len(expected)
    await eventually(lambda: _no_lag(engine), "every event acked")


async def _no_lag(engine: Engine) -> bool:
    return await engine.feed.events_lag_ms(2**62) == 0


async def test_crash_between_commit_and_ack_is_replayed_idempotently(
        make_engine: Any, clock: FakeClock, archive_dsn: str) -> None:
    engine = await make_engine()
    jobs = await run_jobs(engine, clock, 300)
    cfg = ArchiverSettings(dsn=archive_dsn, batch=10_000, flush_s=60, claim_idle_s=0.001)
    crashed = Archiver(engine, cfg, clock, consumer="crashed")
    await crashed.start()
    await crashed.tick(block_ms=None)  # reads every event into its batch (not due yet)
    assert len(crashed.batch) > 0
    await crashed.write(crashed.batch)  # commits ... and dies before acking
    await crashed.close()
    successor = Archiver(engine, cfg, clock, consumer="successor")
    await asyncio.sleep(0.01)
    while (await successor.tick(block_ms=None, flush=True)).events:
        pass
    await successor.close()
    assert await archived(archive_dsn) == await redis_statuses(engine, jobs)
    assert await _no_lag(engine)


@pytest.fixture
async def own_pg() -> AsyncIterator[PostgresServer]:
    server = PostgresServer().init().start()  # this test stops it: not the shared one
    conn = await pg.connect(server.dsn)
    await pg.migrate(conn)
    await conn.commit()
    await conn.close()
    try:
        yield server
    finally:
        server.cleanup()


# A 20 s outage under load (the archiver backs off up to retry_max_s between attempts);
# RSCHED_TEST_PG_OUTAGE_S shortens it when iterating on this test.
OUTAGE_S = float(os.environ.get("RSCHED_TEST_PG_OUTAGE_S", "20"))


async def test_postgres_stopped_under_load_then_archive_catches_up(
        make_engine: Any, clock: FakeClock, own_pg: PostgresServer,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rsched.archive.archiver")
    engine = await make_engine()
    cfg = ArchiverSettings(dsn=own_pg.dsn, batch=500, flush_s=0.05, retry_max_s=1.0)
    a = Archiver(engine, cfg, clock, consumer="a1")
    loop = asyncio.create_task(a.run())
    jobs = await run_jobs(engine, clock, 500)
    await eventually(lambda: _matches(own_pg.dsn, engine, jobs), "the first wave archived")
    await asyncio.to_thread(own_pg.stop, "immediate")
    down_at = time.monotonic()
    while time.monotonic() - down_at < OUTAGE_S:  # scheduling and runs go on meanwhile
        jobs += await run_jobs(engine, clock, 250, start=len(jobs))
    assert "PostgreSQL unavailable" in caplog.text, "the archiver reports the outage"
    assert await engine.feed.events_lag_ms(2**62) > 0, "events wait in Redis"
    expected = await redis_statuses(engine, jobs)  # final: every run has ended
    await asyncio.to_thread(own_pg.start)

    async def caught_up() -> bool:
        try:
            return await archived(own_pg.dsn) == expected
        except psycopg.OperationalError:
            return False

    await eventually(caught_up, "the archive to catch up", timeout_s=60)
    assert len(expected) == len(jobs) > 500
    assert "PostgreSQL reachable again" in caplog.text
    await eventually(lambda: _no_lag(engine), "every event acked")
    await a.stop()
    await asyncio.wait_for(loop, 15)


async def _matches(dsn: str, engine: Engine, jobs: list[str]) -> bool:
    try:
        return await archived(dsn) == await redis_statuses(engine, jobs)
    except psycopg.OperationalError:
        return False
