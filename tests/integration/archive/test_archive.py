"""The archiver copies every job and run transition into PostgreSQL, idempotently."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from rsched.archive.archiver import Archiver
from rsched.clock import FakeClock
from rsched.models import Every, Immediate, JobDef, RetryPolicy
from rsched.settings import ArchiverSettings
from rsched.tasks import TaskRegistry
from tests.support import system
from tests.support.procs import run_cli


@pytest.fixture
async def make_archiver(archive_dsn: str, clock: FakeClock) -> AsyncIterator[Any]:
    made: list[Archiver] = []

    def make(engine: Any, consumer: str = "a1", **cfg: Any) -> Archiver:
        base = ArchiverSettings(dsn=archive_dsn, batch=5000, flush_s=0.0, claim_idle_s=3600)
        made.append(Archiver(engine, msgspec.structs.replace(base, **cfg), clock, consumer))
        return made[-1]

    yield make
    for a in made:
        await a.close()


async def unarchived(engine: Any) -> int:
    """Age of the oldest unacked event from far in the future: > 0 while any waits."""
    return int(await engine.feed.events_lag_ms(2**62))


async def drain(a: Archiver) -> int:
    total = 0
    while True:
        report = await a.tick(block_ms=None, flush=True)
        total += report.events
        if report.events == 0:
            return total


def outcomes_registry() -> TaskRegistry:
    reg = TaskRegistry()

    @reg.task(name="mixed")
    async def mixed(kind: str) -> str:
        if kind == "fail":
            raise RuntimeError("always")
        return kind

    return reg


async def every_second_job_ran(engine: Any, clock: FakeClock,
                               slots: int) -> tuple[str, Any, str]:
    """An every-second job whose first ``slots`` runs succeeded: (job, scheduler, worker)."""
    reg = outcomes_registry()
    c, s = system.client(engine, clock, reg), system.scheduler(engine, clock)
    w = system.worker(engine, clock, reg)
    await w.start()
    job = await c.schedule(JobDef(task="mixed", kwargs={"kind": "ok"},
                                  schedule=Every(every_ms=1000)))
    for _ in range(slots):
        await system.fire_until_idle(s)
        await w.tick(block_ms=None)
        await w.drain()
        clock.advance(1000)
    return job, s, w.id


async def test_ten_thousand_runs_match_redis_exactly(make_engine: Any, clock: FakeClock,
                                                     make_archiver: Any, db: Any) -> None:
    engine = await make_engine(shards=4)
    reg = outcomes_registry()
    c, s = system.client(engine, clock, reg), system.scheduler(engine, clock, batch=2000)
    w = system.worker(engine, clock, reg, concurrency=500, batch=500, run_ttl_s=3600)
    await w.start()
    rng = random.Random(7)
    kinds = [rng.choice(["ok", "ok", "ok", "fail"]) for _ in range(10_000)]
    jobs = [await c.schedule(JobDef(task="mixed", kwargs={"kind": k}, schedule=Immediate(),
                                    retry=RetryPolicy(max_attempts=2, backoff_s=1, jitter=0)))
            for k in kinds]
    await system.fire_until_idle(s)
    idle_rounds = 0
    while idle_rounds < 2:  # first attempts, then retries after their backoff
        started = (await w.tick(block_ms=None)).started
        await w.drain()
        if not started:
            clock.advance(1000)
            idle_rounds = 0 if await system.fire_until_idle(s) else idle_rounds + 1
    a = make_archiver(engine)
    await a.start()
    assert await drain(a) > 0
    redis_status = {r.id: r.status.value for j in jobs for r in await engine.query.job_runs(j)}
    rows = await (await db.execute("SELECT run_id, status, attempt FROM runs")).fetchall()
    assert len(rows) == 10_000
    assert {r[0]: r[1] for r in rows} == redis_status
    counts = {st: list(redis_status.values()).count(st) for st in set(redis_status.values())}
    assert set(counts) == {"succeeded", "dead"}
    assert counts["dead"] == kinds.count("fail")
    assert await unarchived(engine) == 0


async def test_replayed_events_never_duplicate_or_regress_rows(make_engine: Any,
                                                               clock: FakeClock,
                                                               make_archiver: Any,
                                                               db: Any) -> None:
    engine = await make_engine(shards=2)
    job, s, worker_id = await every_second_job_ran(engine, clock, 5)
    a = make_archiver(engine)
    await a.start()
    events = await engine.feed.read_events("a1", 1000, None)
    from rsched.archive.batch import Batch

    whole = Batch()
    for e in events:
        whole.add(e)
    await a.write(whole)
    # replay every event again, one per batch and in reverse order: nothing changes
    for e in reversed(events):
        single = Batch()
        single.add(e)
        await a.write(single)
    rows = await (await db.execute(
        "SELECT run_id, status, attempt, enqueued_at IS NOT NULL, started_at IS NOT NULL,"
        " finished_at IS NOT NULL, worker FROM runs ORDER BY seq")).fetchall()
    assert [r[0] for r in rows] == [f"{job}:{n}" for n in range(1, 6)]
    assert all(r[1:6] == ("succeeded", 1, True, True, True) and r[6] == worker_id for r in rows)
    versions = await (await db.execute("SELECT job_id, version FROM job_versions")).fetchall()
    assert versions == [(job, 1)]
    [(state, task)] = await (await db.execute("SELECT state, task FROM jobs")).fetchall()
    assert (state, task) == ("active", "mixed")


async def test_a_run_cancelled_while_waiting_for_its_retry_keeps_redis_attempt(
        make_engine: Any, clock: FakeClock, make_archiver: Any, db: Any) -> None:
    """Every run event carries the run's attempt as Redis holds it after the transition
    (lua/README.md): a retrying run's row says the attempt to run next, and a cancel of
    that run, archived in a later batch or in the same one, keeps it."""
    engine = await make_engine(shards=2)
    reg = outcomes_registry()
    c, s = system.client(engine, clock, reg), system.scheduler(engine, clock)
    w = system.worker(engine, clock, reg)
    await w.start()
    retry = RetryPolicy(max_attempts=3, backoff_s=600, jitter=0)
    later, same = [await c.schedule(JobDef(task="mixed", kwargs={"kind": "fail"},
                                           schedule=Immediate(), retry=retry))
                   for _ in range(2)]
    await system.fire_until_idle(s)
    await w.tick(block_ms=None)
    await w.drain()  # attempt 1 failed: both runs wait for attempt 2
    await c.cancel(same)  # its retrying and cancelled events go in one batch
    a = make_archiver(engine)
    await a.start()
    await drain(a)
    [retrying] = await engine.query.job_runs(later)
    row = await (await db.execute("SELECT status, attempt FROM runs WHERE job_id = %s",
                                  (later,))).fetchone()
    assert (retrying.status.value, retrying.attempt) == ("retrying", 2)
    assert row == ("retrying", 2), "the retrying row names the attempt Redis will run"
    await c.cancel(later)  # its cancelled event goes in a batch of its own
    await drain(a)
    for job in (later, same):
        [run] = await engine.query.job_runs(job)
        row = await (await db.execute("SELECT status, attempt FROM runs WHERE job_id = %s",
                                      (job,))).fetchone()
        assert (run.status.value, run.attempt) == ("cancelled", 2)
        assert row == ("cancelled", run.attempt), job


async def test_job_versions_and_states_are_kept(make_engine: Any, clock: FakeClock,
                                               make_archiver: Any, db: Any) -> None:
    engine = await make_engine(shards=2)
    reg = outcomes_registry()
    c = system.client(engine, clock, reg)
    job = await c.schedule(JobDef(task="mixed", kwargs={"kind": "ok"},
                                  schedule=Every(every_ms=60_000)))
    await c.update(job, JobDef(task="mixed", kwargs={"kind": "ok"},
                               schedule=Every(every_ms=1000)))
    await c.pause(job)
    a = make_archiver(engine)
    await a.start()
    await drain(a)
    versions = await (await db.execute(
        "SELECT version FROM job_versions WHERE job_id = %s ORDER BY version", (job,)
    )).fetchall()
    assert versions == [(1,), (2,)]
    [(state, version)] = await (await db.execute("SELECT state, version FROM jobs")).fetchall()
    assert (state, version) == ("paused", 2)


async def test_recent_runs_overlay_live_redis_state_and_cli_history(
        make_engine: Any, clock: FakeClock, make_archiver: Any, archive_dsn: str, db: Any,
        redis_url: str, prefix: str) -> None:
    from rsched.archive import history

    engine = await make_engine(shards=2)
    job, s, worker_id = await every_second_job_ran(engine, clock, 3)
    a = make_archiver(engine)
    await a.start()
    await drain(a)
    await system.fire_until_idle(s)  # run 4 is queued in Redis, not archived yet
    await engine.core.redis.delete(engine.keys_for(job).run(f"{job}:1"))  # run 1 expired in Redis
    runs = await history.recent_runs(engine, db, job, limit=10)
    assert [(r.id, r.status.value) for r in runs] == [
        (f"{job}:4", "queued"), (f"{job}:3", "succeeded"), (f"{job}:2", "succeeded"),
        (f"{job}:1", "succeeded")]
    env = {"RSCHED_REDIS__URL": redis_url, "RSCHED_REDIS__PREFIX": prefix,
           "RSCHED_REDIS__SHARDS": "2", "RSCHED_ARCHIVER__DSN": archive_dsn}

    def cli_history(*args: str) -> Any:
        out = run_cli("jobs", "history", job, "--json", *args, env=env)
        assert out.returncode == 0, out.stderr
        return msgspec.json.decode(out.stdout)

    doc = cli_history("--limit", "2")
    assert [r["id"] for r in doc["runs"]] == [f"{job}:3", f"{job}:2"]
    assert doc["next_cursor"] and doc["stats"]["succeeded"] == 3
    assert [(v["version"], v["state"]) for v in doc["versions"]] == [(1, "active")]
    assert doc["skips"] == []
    assert [r["id"] for r in cli_history("--cursor", doc["next_cursor"])["runs"]] == [f"{job}:1"]
    second = await history.run(db, f"{job}:2")
    assert second is not None
    since = datetime.fromtimestamp(second.slot_ms / 1000, UTC).isoformat()
    until = datetime.fromtimestamp((second.slot_ms + 1) / 1000, UTC).isoformat()
    window = cli_history("--since", since, "--until", until)
    assert [r["id"] for r in window["runs"]] == [f"{job}:2"]
    unknown = run_cli("jobs", "history", "no-such-job", env=env)
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert "job 'no-such-job' is not in the archive" in unknown.stderr


async def test_misfire_skips_and_free_text_errors_are_archived(make_engine: Any,
                                                               clock: FakeClock,
                                                               make_archiver: Any,
                                                               db: Any) -> None:
    from rsched.archive import history
    from rsched.models import Misfire

    engine = await make_engine(shards=2)
    reg = outcomes_registry()

    @reg.task(name="nasty")
    async def nasty() -> None:
        raise RuntimeError("tab\there\nnew line \\ backslash \\N not null")

    c, s = system.client(engine, clock, reg), system.scheduler(engine, clock)
    w = system.worker(engine, clock, reg)
    await w.start()
    late = await c.schedule(JobDef(task="mixed", kwargs={"kind": "ok"}, misfire=Misfire.SKIP,
                                   grace_s=0.5, schedule=Every(every_ms=1000)))
    bad = await c.schedule(JobDef(task="nasty", schedule=Immediate(),
                                  retry=RetryPolicy(max_attempts=1)))
    await system.fire_until_idle(s)
    await w.tick(block_ms=None)
    await w.drain()
    clock.advance(10_000)  # `late` misses 10 slots: skipped by its misfire policy
    await system.fire_until_idle(s)
    a = make_archiver(engine)
    await a.start()
    await drain(a)
    [(error, status)] = await (await db.execute(
        "SELECT error, status FROM runs WHERE job_id = %s", (bad,))).fetchall()
    assert status == "dead"
    assert error.startswith("RuntimeError: tab\there\nnew line \\ backslash \\N not null\n"
                            "Traceback (most recent call last):\n")  # then the traceback
    skips = await history.skips(db, late)
    assert [k.why for k in skips] == ["misfire"] and skips[0].missed >= 9


async def test_overlap_skips_are_archived(make_engine: Any, clock: FakeClock,
                                          make_archiver: Any, db: Any) -> None:
    from rsched.archive import history
    from rsched.models import Overlap

    engine = await make_engine(shards=2)
    c, s = system.client(engine, clock, outcomes_registry()), system.scheduler(engine, clock)
    job = await c.schedule(JobDef(task="mixed", kwargs={"kind": "ok"}, overlap=Overlap.FORBID,
                                  schedule=Every(every_ms=1000)))
    await system.fire_until_idle(s)  # run 1 queued and never started (no worker)
    clock.advance(1000)
    await system.fire_until_idle(s)  # slot 2: run 1 still active -> skipped
    a = make_archiver(engine)
    await a.start()
    await drain(a)
    skips = await history.skips(db, job)
    assert [(k.why, k.missed) for k in skips] == [("overlap", 1)]
    job_row = await c.get(job)
    assert skips[0].slot_ms == job_row.next_ms - 1000  # type: ignore[union-attr]


async def test_state_committed_before_the_jobs_creation_is_kept(make_engine: Any,
                                                                clock: FakeClock,
                                                                make_archiver: Any,
                                                                db: Any) -> None:
    """Two archivers: the one holding the pause commits before the one holding the
    creation. The job ends paused, with its definition."""
    from rsched.archive.batch import Batch

    engine = await make_engine(shards=1)
    c = system.client(engine, clock, outcomes_registry())
    job = await c.schedule(JobDef(task="mixed", kwargs={"kind": "ok"},
                                  schedule=Every(every_ms=60_000)))
    clock.advance(5)
    await c.pause(job)
    a = make_archiver(engine)
    await a.start()
    [created, paused] = await engine.feed.read_events("a1", 100, None)
    for event in (paused, created):  # the later batch commits first
        single = Batch()
        single.add(event)
        await a.write(single)
    [row] = await (await db.execute(
        "SELECT state, version, task, spec IS NOT NULL FROM jobs")).fetchall()
    assert row == ("paused", 1, "mixed", True)


async def test_malformed_events_are_set_aside_and_the_rest_archived(
        make_engine: Any, clock: FakeClock, make_archiver: Any, db: Any) -> None:
    engine = await make_engine(shards=1)
    job, s, _ = await every_second_job_ran(engine, clock, 2)
    events = engine.core.shard_keys[0].events
    good_id = await engine.core.redis.xadd(events, {"t": 1, "k": "run", "r": f"{job}:9",
                                               "j": job, "st": "queued", "slot": clock.ms})
    bad_cast = await engine.core.redis.xadd(events, {"t": 1, "k": "run", "r": "x:1", "j": "x",
                                                "st": "queued", "slot": "soon"})
    no_job = await engine.core.redis.xadd(events, {"t": 1, "k": "run", "r": "y:1", "slot": 5})
    a = make_archiver(engine)
    await a.start()
    await drain(a)
    rejected = await (await db.execute(
        "SELECT entry_id, error FROM rejected_events ORDER BY entry_id")).fetchall()
    assert [r[0] for r in rejected] == sorted([bad_cast.decode(), no_job.decode()])
    runs = await (await db.execute("SELECT run_id FROM runs ORDER BY run_id")).fetchall()
    assert [r[0] for r in runs] == [f"{job}:1", f"{job}:2", f"{job}:9"]
    assert good_id and await unarchived(engine) == 0


async def test_a_batch_holds_at_most_batch_events(make_engine: Any, clock: FakeClock,
                                                  make_archiver: Any) -> None:
    engine = await make_engine(shards=4)
    await every_second_job_ran(engine, clock, 60)  # ~180 run events on one shard
    c = system.client(engine, clock, outcomes_registry())
    for i in range(40):  # job events spread over the shards
        await c.schedule(JobDef(id=f"spread{i}", task="mixed", kwargs={"kind": "ok"},
                                schedule=Every(every_ms=60_000)))
    a = make_archiver(engine, batch=50)
    await a.start()
    assert await unarchived(engine) > 0
    sizes = []
    while (report := await a.tick(block_ms=None, flush=True)).events:
        sizes.append(report.events)
    assert max(sizes) <= 50 and sum(sizes) >= 220
    assert await unarchived(engine) == 0


async def test_a_run_in_flight_is_held_back_until_it_ends_or_flush_s_passes(
        make_engine: Any, clock: FakeClock, make_archiver: Any, db: Any) -> None:
    """A full batch holds back runs not ended yet (their events unacked) so that a run
    whose events span batches is written once, ended; one that does not end within
    flush_s is written as it stands."""
    engine = await make_engine(shards=1)
    reg = outcomes_registry()
    c, s = system.client(engine, clock, reg), system.scheduler(engine, clock)
    w = system.worker(engine, clock, reg)
    a = make_archiver(engine, batch=1, flush_s=0.5)  # every event fills a batch
    await a.start()
    ends = await c.schedule(JobDef(task="mixed", kwargs={"kind": "ok"}, schedule=Immediate()))
    await system.fire_until_idle(s)  # job created, run queued

    async def archived(run_job: str) -> Any:
        for _ in range(20):  # a full batch commits in the background: tick it home
            await a.tick(block_ms=None)
            await asyncio.sleep(0.01)
        return await (await db.execute("SELECT status FROM runs WHERE job_id = %s",
                                       (run_job,))).fetchall()

    assert await archived(ends) == [] and await unarchived(engine) > 0, "held, unacked"
    await w.start()
    await w.tick(block_ms=None)
    await w.drain()  # running, succeeded: the row is written once, ended
    assert await archived(ends) == [("succeeded",)] and await unarchived(engine) == 0
    waits = await c.schedule(JobDef(task="mixed", kwargs={"kind": "ok"}, queue="none",
                                    schedule=Immediate()))
    await system.fire_until_idle(s)  # queued on a queue no worker reads
    assert await archived(waits) == [] and await unarchived(engine) > 0
    await asyncio.sleep(0.5)
    assert await archived(waits) == [("queued",)] and await unarchived(engine) == 0


async def test_lag_is_the_age_of_the_oldest_unarchived_event(redis: Any, prefix: str,
                                                             make_archiver: Any) -> None:
    from rsched.engine import Engine, RedisClock
    from rsched.settings import RedisSettings

    engine = Engine(redis, RedisSettings(prefix=prefix, shards=2))
    await engine.start()
    a = Archiver(engine, ArchiverSettings(dsn=(make_archiver(engine)).cfg.dsn, flush_s=0),
                 RedisClock(redis), "lag")  # production's clock: Redis TIME, as event ids
    await a.start()
    assert await a.lag_ms() == 0
    await redis.xadd(engine.core.shard_keys[1].events, {"t": 1, "k": "nothing"})
    await asyncio.sleep(0.05)
    assert 50 <= await a.lag_ms() < 5000
    await a.tick(block_ms=None, flush=True)
    assert await a.lag_ms() == 0
    await a.close()
