"""The archiver role: copies the events streams into PostgreSQL, idempotently.

Owns: reading events through the `archivers` consumer group, when to commit a batch (by
size and age), acking only after commit, trimming acked events, taking over a dead
archiver's unacked events, backing off while PostgreSQL or Redis is down, reporting the
archive lag, and running retention. Must not: change job or run state in Redis, format
keys, or know the SQL of rows (batch.py folds events and writes them).

At least once into PostgreSQL, exactly once in effect: an event is acked only after the
transaction holding it committed, and rows only move forward (batch.py), so a
batch replayed after a crash between commit and ack changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from rsched import metrics
from rsched.archive import pg
from rsched.archive.batch import Batch, Conn, Event, write_batch, write_isolating
from rsched.clock import Clock
from rsched.engine import Engine
from rsched.errors import ArchiveError
from rsched.settings import ArchiverSettings

log = logging.getLogger(__name__)
LAG_EVERY_S = 5.0  # how often the archive-lag gauge is measured (a few reads per shard)
_PG_DOWN = (psycopg.OperationalError, ArchiveError)
_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)


@dataclass(frozen=True)
class ArchiveReport:
    events: int  # events committed and acked
    runs: int
    jobs: int  # job versions

    def __add__(self, other: ArchiveReport) -> ArchiveReport:
        return ArchiveReport(self.events + other.events, self.runs + other.runs,
                             self.jobs + other.jobs)


NOTHING = ArchiveReport(0, 0, 0)


class Archiver:
    def __init__(self, engine: Engine, cfg: ArchiverSettings, clock: Clock,
                 consumer: str | None = None) -> None:
        self.engine = engine
        self.cfg = cfg
        self.clock = clock
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.conn: Conn | None = None
        self.batch = Batch()
        self._recovering = True  # first re-read our own unacked events (after a crash)
        self._stopping = asyncio.Event()
        self._next_claim = 0.0
        self._next_trim = 0.0
        self._next_retention = 0.0
        self._next_report = 0.0
        self._next_lag = 0.0
        self._staged: object = None  # the connection whose session has the staging table
        self._outage_since: float | None = None
        self._grace_s = 10.0
        # one batch commits in the background while the next is read (PostgreSQL and
        # Python work overlap); a batch whose commit failed is retried first
        self._inflight: asyncio.Task[ArchiveReport] | None = None
        self._failed: Batch | None = None

    async def start(self) -> None:
        await self.engine.feed.ensure_event_groups()

    async def _db(self) -> Conn:
        if self.conn is None or self.conn.closed:
            self.conn = await pg.connect(self.cfg.dsn)
        return self.conn

    async def lag_ms(self) -> int:
        """Archive lag: age of the oldest event not yet archived (0 when all are)."""
        return await self.engine.feed.events_lag_ms(await self.clock.now_ms())

    # -- one iteration ------------------------------------------------------------------
    async def tick(self, block_ms: int | None = None, flush: bool = False) -> ArchiveReport:
        """Read events into the batch; when it is full, old enough, or ``flush`` is set,
        start committing it (in the background, while the next one is read; ``flush``
        waits for every commit). Returns what got committed and acked meanwhile. Raises
        on PostgreSQL errors: nothing of that batch is acked, the next tick retries it."""
        report = await self._reap(wait=flush)
        if self._failed is not None:
            batch, self._failed = self._failed, None
            report += await self._commit(batch)
        urgent = False
        room = self.cfg.batch - (len(self.batch) - self.batch.held)
        if room > 0:
            # COUNT is per stream: split the room so a batch stays near cfg.batch events
            per_stream = max(1, -(-room // self.engine.shards))
            events, urgent = await self._read(per_stream, block_ms)
            await self._fold(events)
        full = len(self.batch) - self.batch.held >= self.cfg.batch
        now = time.monotonic()
        aged = now - self.batch.started >= self.cfg.flush_s
        if self.batch.events and (flush or full or aged or urgent):
            report += await self._reap(wait=True)  # one commit at a time per connection
            batch = self.batch
            if flush or urgent:  # urgent: a re-read would return these unacked ones again
                self.batch = Batch()
                report += await self._commit(batch)
            else:  # runs still in flight wait (up to flush_s) for their ending's event
                self.batch = batch.hold_back(now - self.cfg.flush_s, self.cfg.batch)
                if batch.events:
                    self._inflight = asyncio.create_task(self._commit(batch))
        return report

    async def _fold(self, events: list[Event]) -> None:
        """Add events to the batch, yielding to the event loop every few hundred so the
        background commit's next round trip is not held up (that is the overlap)."""
        add, now = self.batch.add, time.monotonic()
        for i, event in enumerate(events):
            add(event, now)
            if i % 500 == 499 and self._inflight is not None:
                await asyncio.sleep(0)

    async def _reap(self, wait: bool) -> ArchiveReport:
        """The background commit's report once it is done (``wait``: wait for it)."""
        task = self._inflight
        if task is None or not (wait or task.done()):
            return NOTHING
        self._inflight = None
        return await task

    async def _commit(self, batch: Batch) -> ArchiveReport:
        try:
            await self.write(batch)
            await self.engine.feed.ack_events(batch.ids)
        except BaseException:
            self._failed = batch  # retried (written again: idempotent) before anything else
            raise
        metrics.ARCHIVED.inc(len(batch))
        return ArchiveReport(len(batch), len(batch.runs), len(batch.versions))

    def idle(self) -> bool:
        """Nothing read and not yet acked: no batch, no commit in flight or to retry."""
        return not self.batch.events and self._inflight is None and self._failed is None

    def held(self) -> int:
        """Events read and not yet acked by this archiver."""
        return len(self.batch) + len(self._failed or ())

    async def _read(self, count: int, block_ms: int | None) -> tuple[list[Event], bool]:
        """New events, or (urgent: committed at once, as a re-read would return them
        again) this consumer's unacked ones after a restart, or a dead archiver's."""
        if self._recovering:
            events = await self.engine.feed.read_events(self.consumer, count, None, pending=True)
            if events:
                return events, True
            self._recovering = False
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + self.cfg.claim_idle_s / 2
            claimed = await self.engine.feed.claim_events(self.consumer,
                                                     int(self.cfg.claim_idle_s * 1000), count)
            if claimed:
                log.info("took over %d unacked event(s) of a dead archiver", len(claimed))
                return claimed, True
        # a non-blocking read first: the bulk path when events wait (see Engine.read_events)
        events = await self.engine.feed.read_events(self.consumer, count, None)
        if events or block_ms is None:
            return events, False
        if self.batch.events:  # wait no longer than until the batch is due
            age_ms = (time.monotonic() - self.batch.started) * 1000
            block_ms = min(block_ms, max(1, int(self.cfg.flush_s * 1000 - age_ms)))
        return await self.engine.feed.read_events(self.consumer, count, block_ms), False

    async def write(self, batch: Batch) -> None:
        """Commit a batch in one transaction (events the database rejects as data are set
        aside in `rejected_events` so one bad event cannot stop the archive)."""
        conn = await self._db()
        try:
            if await write_batch(conn, batch, stage_ready=self._staged is conn):
                self._staged = conn
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            self._staged = None  # a rolled-back transaction takes the staging table with it
            log.error("PostgreSQL rejected a batch of %d event(s) (%s); writing them one by"
                      " one", len(batch), str(exc).strip())
            await write_isolating(conn, batch)
        except BaseException:
            self._staged = None
            raise

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
                    self._recovered()
                await self._maintain(report)
                backoff = 0.5
            except _PG_DOWN as exc:
                self._outage_since = self._outage_since or time.monotonic()
                log.warning("PostgreSQL unavailable (%s); %d event(s) held, the rest wait in"
                            " Redis; retrying in %.1fs", str(exc).strip(), self.held(), backoff)
                await self.close()
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.cfg.retry_max_s)
            except _REDIS_DOWN as exc:
                log.warning("Redis unavailable (%s); retrying in %.1fs", exc, backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.cfg.retry_max_s)
            except ResponseError as exc:
                if not str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                    raise
                # Redis lost its data (a FLUSHALL, a failover without persistence): what
                # this archiver holds is still written; new events need the group again
                log.warning("events consumer group gone (Redis lost its data?); recreating it")
                await self.engine.feed.ensure_event_groups()
            except psycopg.Error as exc:  # e.g. schema missing: an operator must act
                log.error("archive write failed (%s; has `rsched migrate` run?); retrying in"
                          " %.1fs", str(exc).strip(), backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.cfg.retry_max_s)

    def _recovered(self) -> None:
        if self._outage_since is not None:
            log.info("PostgreSQL reachable again after %.1fs; catching up",
                     time.monotonic() - self._outage_since)
            self._outage_since = None

    async def _maintain(self, report: ArchiveReport) -> None:
        now = time.monotonic()
        if report.events and now >= self._next_trim:
            self._next_trim = now + 1.0  # trimming costs round trips per shard
            await self.engine.feed.trim_events()
        if now >= self._next_lag:  # the gauge every 5 s, the log line every report_every_s
            self._next_lag = now + LAG_EVERY_S
            lag_s = await self.lag_ms() / 1000
            metrics.ARCHIVE_LAG.set(lag_s)
            if now >= self._next_report:
                self._next_report = now + self.cfg.report_every_s
                log.info("archive lag %.1fs (consumer %s)", lag_s, self.consumer)
        if now >= self._next_retention:
            self._next_retention = now + self.cfg.retention_every_s
            await self._reap(wait=True)  # the connection's transaction must be over
            today = datetime.fromtimestamp(await self.clock.now_ms() / 1000, UTC)
            await pg.apply_retention(await self._db(), today, self.cfg.retention_days)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    async def close(self) -> None:
        if self._inflight is not None:  # its batch stays unacked: retried or re-read
            self._inflight.cancel()
            with contextlib.suppress(BaseException):
                await self._inflight
            self._inflight = None
        if self.conn is not None:
            try:
                await self.conn.close()
            except psycopg.Error:
                pass
            self.conn = None

    async def stop(self, grace_s: float = 0.0) -> None:
        """Stop after the current iteration; run() commits what it holds before returning
        (within ``grace_s``, at least 10 s); what it cannot stays pending in Redis."""
        self._grace_s = max(grace_s, 10.0)
        self._stopping.set()

    async def _final_flush(self) -> None:
        try:
            await asyncio.wait_for(self._commit_all(), self._grace_s)
        except (*_PG_DOWN, *_REDIS_DOWN, psycopg.Error, TimeoutError) as exc:
            log.warning("stopping with %d unarchived event(s) left pending in Redis (%s)",
                        self.held(), exc)
        await self.close()

    async def _commit_all(self) -> None:
        await self._reap(wait=True)
        if self._failed is not None:
            batch, self._failed = self._failed, None
            await self._commit(batch)
        if self.batch.events:
            batch, self.batch = self.batch, Batch()
            await self._commit(batch)
