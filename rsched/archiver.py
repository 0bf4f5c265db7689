"""The archiver role: copies the events streams into PostgreSQL, idempotently.

Owns: reading events through the `archivers` consumer group, folding them into run and
job rows, batched writes (COPY into a staging table, then one upsert), acking only after
commit, trimming acked events, taking over a dead archiver's unacked events, retention.
Must not: change job or run state in Redis, or format keys.

Rows only move forward: each carries the id (ms, seq) of the newest event applied, and an
older event never overwrites a newer one's fields, so replays and redeliveries are no-ops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from rsched import codec, pg
from rsched.clock import Clock
from rsched.engine import Engine
from rsched.errors import ArchiveError, SerializationError
from rsched.settings import ArchiverSettings

log = logging.getLogger(__name__)
Event = tuple[int, str, dict[bytes, bytes]]  # (shard, entry id, fields)
_PG_DOWN = (psycopg.OperationalError, ArchiveError)
_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)

# Run columns staged by COPY (times as epoch ms; converted in SQL).
RUN_COLS = ("run_id", "job_id", "seq", "tenant", "queue", "status", "attempt", "slot_ms",
            "manual", "enq_ms", "start_ms", "end_ms", "worker", "error", "result", "ev_ms",
            "ev_seq")
# Fields that keep their first value once set, and those the newest event overrides.
_RUN_FIELDS = {b"tn": "tenant", b"q": "queue", b"enq": "enq_ms", b"start": "start_ms",
               b"end": "end_ms", b"w": "worker", b"err": "error", b"res": "result"}
_INT_FIELDS = {"enq_ms", "start_ms", "end_ms"}


@dataclass
class RunRow:
    run_id: str
    job_id: str
    slot_ms: int
    status: str = "queued"
    attempt: int = 1
    manual: bool = False
    ev: tuple[int, int] = (0, 0)
    cols: dict[str, Any] = field(default_factory=dict)

    def apply(self, ev: tuple[int, int], f: dict[bytes, bytes]) -> None:
        newer = ev > self.ev
        if newer:
            self.ev = ev
            self.status = f[b"st"].decode()
            self.attempt = int(f.get(b"att", b"1"))
        if f.get(b"why") == b"run_now":
            self.manual = True
        for key, col in _RUN_FIELDS.items():
            raw = f.get(key)
            if raw is None or raw == b"":
                continue
            value: Any = int(float(raw)) if col in _INT_FIELDS else raw.decode()
            if newer or col not in self.cols:
                self.cols[col] = value

    def copy_row(self) -> tuple[Any, ...]:
        c = self.cols
        return (self.run_id, self.job_id, int(self.run_id.rsplit(":", 1)[1]), c.get("tenant"),
                c.get("queue"), self.status, self.attempt, self.slot_ms, self.manual,
                c.get("enq_ms"), c.get("start_ms"), c.get("end_ms"), c.get("worker"),
                c.get("error"), (c.get("result") or None), self.ev[0], self.ev[1])


@dataclass
class Batch:
    ids: list[tuple[int, str]] = field(default_factory=list)
    runs: dict[str, RunRow] = field(default_factory=dict)
    versions: list[tuple[Any, ...]] = field(default_factory=list)
    states: list[tuple[Any, ...]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def add(self, event: Event) -> None:
        shard, eid, f = event
        self.ids.append((shard, eid))
        ms, _, seq = eid.partition("-")
        ev = (int(ms), int(seq))
        kind = f.get(b"k")
        if kind == b"run" and f.get(b"slot"):  # every run event names its slot
            self._run(ev, f)
        elif kind == b"job":
            self._job(ev, f)

    def _run(self, ev: tuple[int, int], f: dict[bytes, bytes]) -> None:
        run_id = f[b"r"].decode()
        row = self.runs.get(run_id)
        if row is None:
            row = self.runs[run_id] = RunRow(run_id, f[b"j"].decode(), int(float(f[b"slot"])))
        row.apply(ev, f)

    def _job(self, ev: tuple[int, int], f: dict[bytes, bytes]) -> None:
        job_id, state, t = f[b"j"].decode(), f[b"st"].decode(), int(f[b"t"])
        if b"spec" in f:
            try:
                task = codec.decode_spec(f[b"spec"]).task
            except SerializationError:
                task = "?"
            nxt = int(f[b"next"])
            self.versions.append((job_id, int(f[b"ver"]), f[b"tn"].decode(), f[b"q"].decode(),
                                  task, f[b"spec"], f[b"sched"],
                                  f.get(b"ov", b"allow").decode(),
                                  int(f.get(b"max", b"3")), nxt if nxt >= 0 else None, state,
                                  t, ev[0], ev[1]))
        else:
            self.states.append((state, ev[0], ev[1], job_id))

    def __len__(self) -> int:
        return len(self.ids)


_UPSERT_RUNS = """
INSERT INTO runs (run_id, job_id, seq, tenant, queue, status, attempt, slot_at, manual,
                  enqueued_at, started_at, finished_at, worker, error, result, ev_ms, ev_seq)
SELECT run_id, job_id, seq, tenant, queue, status, attempt, to_timestamp(slot_ms / 1000.0),
       manual, to_timestamp(enq_ms / 1000.0), to_timestamp(start_ms / 1000.0),
       to_timestamp(end_ms / 1000.0), worker, error, result, ev_ms, ev_seq
FROM stage_runs
ON CONFLICT (run_id, slot_at) DO UPDATE SET
  status = CASE WHEN {newer} THEN EXCLUDED.status ELSE runs.status END,
  attempt = CASE WHEN {newer} THEN EXCLUDED.attempt ELSE runs.attempt END,
  manual = runs.manual OR EXCLUDED.manual,
  {merged},
  ev_ms = CASE WHEN {newer} THEN EXCLUDED.ev_ms ELSE runs.ev_ms END,
  ev_seq = CASE WHEN {newer} THEN EXCLUDED.ev_seq ELSE runs.ev_seq END
"""
_NEWER = "(EXCLUDED.ev_ms, EXCLUDED.ev_seq) > (runs.ev_ms, runs.ev_seq)"
_MERGED = ",\n  ".join(
    f"{c} = CASE WHEN {_NEWER} THEN COALESCE(EXCLUDED.{c}, runs.{c})"
    f" ELSE COALESCE(runs.{c}, EXCLUDED.{c}) END"
    for c in ("tenant", "queue", "enqueued_at", "started_at", "finished_at", "worker", "error",
              "result"))
UPSERT_RUNS = _UPSERT_RUNS.format(newer=_NEWER, merged=_MERGED)

UPSERT_JOB = """
INSERT INTO jobs (job_id, version, tenant, queue, task, spec, trigger, overlap, max_attempts,
                  next_ms, state, created_at, updated_at, ev_ms, ev_seq)
VALUES (%(j)s, %(v)s, %(tn)s, %(q)s, %(task)s, %(spec)s, %(sched)s, %(ov)s, %(max)s, %(next)s,
        %(st)s, to_timestamp(%(t)s / 1000.0), to_timestamp(%(t)s / 1000.0), %(ms)s, %(seq)s)
ON CONFLICT (job_id) DO UPDATE SET
  version = EXCLUDED.version, tenant = EXCLUDED.tenant, queue = EXCLUDED.queue,
  task = EXCLUDED.task, spec = EXCLUDED.spec, trigger = EXCLUDED.trigger,
  overlap = EXCLUDED.overlap, max_attempts = EXCLUDED.max_attempts, next_ms = EXCLUDED.next_ms,
  state = EXCLUDED.state, updated_at = EXCLUDED.updated_at, ev_ms = EXCLUDED.ev_ms,
  ev_seq = EXCLUDED.ev_seq
WHERE (EXCLUDED.ev_ms, EXCLUDED.ev_seq) > (jobs.ev_ms, jobs.ev_seq)
"""
INSERT_VERSION = """
INSERT INTO job_versions (job_id, version, tenant, queue, task, spec, trigger, created_at)
VALUES (%(j)s, %(v)s, %(tn)s, %(q)s, %(task)s, %(spec)s, %(sched)s, to_timestamp(%(t)s / 1000.0))
ON CONFLICT DO NOTHING
"""
UPDATE_STATE = """
UPDATE jobs SET state = %s, ev_ms = %s, ev_seq = %s
WHERE job_id = %s AND (ev_ms, ev_seq) < (%s, %s)
"""
_VERSION_KEYS = ("j", "v", "tn", "q", "task", "spec", "sched", "ov", "max", "next", "st", "t",
                 "ms", "seq")


@dataclass(frozen=True)
class ArchiveReport:
    events: int
    runs: int
    jobs: int


class Archiver:
    def __init__(self, engine: Engine, cfg: ArchiverSettings, clock: Clock,
                 consumer: str | None = None) -> None:
        self.engine = engine
        self.cfg = cfg
        self.clock = clock
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self.batch = Batch()
        self._recovering = True  # first re-read our own unacked events (after a crash)
        self._stopping = asyncio.Event()
        self._next_claim = 0.0
        self._next_retention = 0.0
        self._staged: object = None  # the connection whose session has the staging table

    async def start(self) -> None:
        await self.engine.ensure_event_groups()

    async def _db(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if self.conn is None or self.conn.closed:
            self.conn = await pg.connect(self.cfg.dsn)
        return self.conn

    # -- one iteration ------------------------------------------------------------------
    async def tick(self, block_ms: int | None = None, flush: bool = False) -> ArchiveReport:
        """Read one batch of events, and write what is buffered when the batch is full,
        old enough, or ``flush`` is set. Raises on PostgreSQL errors (nothing acked)."""
        room = self.cfg.batch - len(self.batch)
        if room > 0:
            for event in await self._read(room, block_ms):
                self.batch.add(event)
        full = len(self.batch) >= self.cfg.batch
        aged = time.monotonic() - self.batch.started >= self.cfg.flush_s
        if self.batch.ids and (flush or full or aged):
            return await self._flush()
        return ArchiveReport(0, 0, 0)

    async def _read(self, count: int, block_ms: int | None) -> list[Event]:
        if self._recovering:
            events = await self.engine.read_events(self.consumer, count, None, pending=True)
            if events:
                return events
            self._recovering = False
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + self.cfg.claim_idle_s / 2
            claimed = await self.engine.claim_events(self.consumer,
                                                     int(self.cfg.claim_idle_s * 1000), count)
            if claimed:
                log.info("took over %d unacked event(s) of a dead archiver", len(claimed))
                return claimed
        return await self.engine.read_events(self.consumer, count, block_ms)

    async def _flush(self) -> ArchiveReport:
        batch = self.batch
        await self.write(batch)
        await self.engine.ack_events(batch.ids)
        self.batch = Batch()
        return ArchiveReport(len(batch.ids), len(batch.runs), len(batch.versions))

    async def write(self, batch: Batch) -> None:
        """One transaction: stage runs with COPY, upsert them, then job rows."""
        conn = await self._db()
        try:
            await self._write(conn, batch)
        except BaseException:
            self._staged = None  # a rolled-back transaction takes the staging table with it
            raise

    async def _write(self, conn: psycopg.AsyncConnection[tuple[object, ...]],
                     batch: Batch) -> None:
        async with conn.transaction():
            if batch.runs:
                if self._staged is not conn:
                    await self._create_stage(conn)
                    self._staged = conn
                async with conn.cursor() as cur:
                    async with cur.copy(f"COPY stage_runs ({', '.join(RUN_COLS)})"
                                        " FROM STDIN") as copy:
                        for row in batch.runs.values():
                            await copy.write_row(row.copy_row())
                await conn.execute(UPSERT_RUNS)
            if batch.versions:
                params = [dict(zip(_VERSION_KEYS, v, strict=True)) for v in batch.versions]
                async with conn.cursor() as cur:
                    await cur.executemany(INSERT_VERSION, params)
                    await cur.executemany(UPSERT_JOB, params)
            if batch.states:
                async with conn.cursor() as cur:
                    await cur.executemany(UPDATE_STATE, [
                        (st, ms, seq, j, ms, seq) for st, ms, seq, j in batch.states])

    @staticmethod
    async def _create_stage(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        await conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS stage_runs (run_id text, job_id text, seq bigint,"
            " tenant text, queue text, status text, attempt int, slot_ms bigint, manual bool,"
            " enq_ms bigint, start_ms bigint, end_ms bigint, worker text, error text,"
            " result text, ev_ms bigint, ev_seq bigint) ON COMMIT DELETE ROWS")

    # -- loop ---------------------------------------------------------------------------
    async def run(self) -> None:
        await self.start()
        try:
            await self._loop()
        finally:
            await self._final_flush()

    async def _loop(self) -> None:
        block_ms = max(1, int(self.cfg.flush_s * 1000))
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                report = await self.tick(block_ms)
                if report.events:
                    await self.engine.trim_events()
                await self._maintain()
                backoff = 0.5
            except _PG_DOWN as exc:
                log.warning("PostgreSQL unavailable (%s); %d event(s) wait in Redis, retrying"
                            " in %.1fs", str(exc).strip(), len(self.batch), backoff)
                await self.close()
                await self._sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            except _REDIS_DOWN as exc:
                log.warning("Redis unavailable (%s); retrying in %.1fs", exc, backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _maintain(self) -> None:
        if time.monotonic() < self._next_retention:
            return
        self._next_retention = time.monotonic() + 3600
        conn = await self._db()
        await pg.apply_retention(conn, datetime.now(UTC), self.cfg.retention_days)
        lag = await self.engine.events_lag_ms(await self.clock.now_ms())
        log.info("archive lag %.1fs", lag / 1000)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    async def close(self) -> None:
        if self.conn is not None:
            try:
                await self.conn.close()
            except psycopg.Error:
                pass
            self.conn = None

    async def stop(self, grace_s: float = 0.0) -> None:
        """Stop after the current iteration; run() writes what it holds before returning."""
        self._stopping.set()

    async def _final_flush(self) -> None:
        if self.batch.ids:
            try:
                await asyncio.wait_for(self._flush(), 10)
            except (*_PG_DOWN, *_REDIS_DOWN, TimeoutError) as exc:
                log.warning("stopping with %d unarchived event(s) left pending (%s)",
                            len(self.batch), exc)
        await self.close()
