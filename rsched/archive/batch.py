"""Folding events into archive rows and writing one batch of them in one transaction.

Owns: the mapping from event fields (as the Lua scripts write them) to rows of `runs`,
`jobs`, `job_versions`, `skips` and `rejected_events`, and the SQL that writes them forward-only.
Must not: touch Redis, ack anything or decide when to write (archiver.py does).

Rows only move forward: each carries the id (ms, seq) of the newest event applied, and
an older event never overwrites a newer one's fields, so replays, redeliveries and
batches committed out of order (several archivers) all leave the same rows. A job's
definition moves forward by its version number, its state by event id, separately, so a
state change archived before the job's creation (by another archiver) is not lost.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from rsched import codec
from rsched.errors import SerializationError

log = logging.getLogger(__name__)
Event = tuple[int, str, dict[bytes, bytes]]  # (shard, entry id, raw fields)
Conn = psycopg.AsyncConnection[Any]

# Run columns staged by COPY, in the order of RunRow.copy_line; numbers stay text
# (PostgreSQL parses them, not Python).
RUN_COLS = ("run_id", "job_id", "seq", "tenant", "queue", "status", "attempt", "slot_ms",
            "manual", "enq_ms", "start_ms", "end_ms", "worker", "error", "result", "ev_ms",
            "ev_seq")
_NULL = b"\\N"


def _tsv(raw: bytes | None) -> bytes:
    """Free text in COPY's text format: empty or missing is NULL; specials escaped."""
    if not raw:
        return _NULL
    if b"\\" in raw or b"\t" in raw or b"\n" in raw or b"\r" in raw:
        return (raw.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\n", b"\\n")
                .replace(b"\r", b"\\r"))
    return raw


def _meta(f: dict[bytes, bytes]) -> dict[str, str | int | None]:
    """A job event's name, labels, unique key and webhook (JSON text) and its max runs,
    concurrency and priority (ints); empty or missing (not set, or an event written before
    they were carried) is None."""
    meta: dict[str, str | int | None] = {
        k: f.get(k.encode(), b"").decode() or None for k in ("nm", "lb", "uk", "hk")}
    for k in ("maxr", "conc", "prio"):
        raw = f.get(k.encode())
        meta[k] = int(raw) if raw else None
    return meta


ENDED = frozenset((b"succeeded", b"failed", b"dead", b"cancelled", b"timed_out"))


class RunRow:
    """One run folded from its events: the newest event's fields win, an older event only
    fills fields still missing. Keeps its events (to hold them back together) and when
    the first of them was read."""

    __slots__ = ("ev", "events", "fields", "manual", "read_at")

    def __init__(self, ev: tuple[int, int], f: dict[bytes, bytes], event: Event,
                 read_at: float) -> None:
        _ = f[b"j"], f[b"st"]  # required (KeyError: a malformed event, rejected)
        self.ev = ev
        self.fields = f.copy()
        self.manual = f.get(b"why") == b"run_now"
        self.events = [event]
        self.read_at = read_at

    def apply(self, ev: tuple[int, int], f: dict[bytes, bytes], event: Event) -> None:
        self.events.append(event)
        if ev > self.ev:
            self.ev = ev
            self.fields.update(f)
        else:
            for key, value in f.items():
                self.fields.setdefault(key, value)
        if f.get(b"why") == b"run_now":
            self.manual = True

    def copy_line(self) -> bytes:
        """The staged row as one line of COPY text (bytes in, bytes out: no decoding).
        Ids, queue, status and numbers are rsched's own (validated, no specials); a
        malformed one fails the batch, which is then written event by event."""
        f = self.fields
        run_id, get, null = f[b"r"], f.get, _NULL
        return b"\t".join((
            run_id, f[b"j"], run_id.rpartition(b":")[2], _tsv(get(b"tn")),
            get(b"q") or null, f[b"st"], get(b"att") or b"1", f[b"slot"],
            b"t" if self.manual else b"f", get(b"enq") or null, get(b"start") or null,
            get(b"end") or null, _tsv(get(b"w")), _tsv(get(b"err")), _tsv(get(b"res")),
            b"%d\t%d" % self.ev))


@dataclass
class Batch:
    """Events read but not yet committed, folded to one row per run."""

    events: list[Event] = field(default_factory=list)
    runs: dict[bytes, RunRow] = field(default_factory=dict)
    versions: list[dict[str, Any]] = field(default_factory=list)
    states: list[tuple[str, str, int, int]] = field(default_factory=list)
    skips: list[tuple[str, int, str, int, int, int, int]] = field(default_factory=list)
    rejected: list[tuple[int, str, str, str]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    held: int = 0  # events held back from the previous batch (hold_back)

    @property
    def ids(self) -> list[tuple[int, str]]:
        return [(shard, eid) for shard, eid, _ in self.events]

    def add(self, event: Event, read_at: float = 0.0) -> None:
        self.events.append(event)
        _, eid, f = event
        try:
            ms, _, seq = eid.partition("-")
            ev = (int(ms), int(seq))
            if f.get(b"k") == b"run":  # the bulk: inline
                if b"slot" in f:  # every run event names its slot (the partition key)
                    row = self.runs.get(f[b"r"])
                    if row is None:
                        self.runs[f[b"r"]] = RunRow(ev, f, event, read_at)
                    else:
                        row.apply(ev, f, event)
            else:
                self._other(ev, f)
        except (KeyError, ValueError) as exc:  # a malformed event must not stop the archive
            self.reject(event, f"{type(exc).__name__}: {exc}")

    def reject(self, event: Event, error: str) -> None:
        shard, eid, f = event
        self.rejected.append((shard, eid, repr(f)[:20_000], error[:2000]))

    def _other(self, ev: tuple[int, int], f: dict[bytes, bytes]) -> None:
        kind = f.get(b"k")
        if kind == b"job":
            self._job(ev, f)
        elif kind == b"skip":
            self.skips.append((f[b"j"].decode(), int(float(f[b"slot"])), f[b"why"].decode(),
                               int(f.get(b"n", b"1")), int(f[b"t"]), *ev))

    def _job(self, ev: tuple[int, int], f: dict[bytes, bytes]) -> None:
        job_id, state = f[b"j"].decode(), f[b"st"].decode()
        if b"spec" not in f:  # pause, resume, cancel, done: the state only
            self.states.append((job_id, state, *ev))
            return
        try:
            task = codec.decode_spec(f[b"spec"]).task
        except SerializationError:
            task = "?"
        nxt = int(f[b"next"])
        self.versions.append({
            "j": job_id, "v": int(f[b"ver"]), "tn": f[b"tn"].decode(), "q": f[b"q"].decode(),
            "task": task, "spec": f[b"spec"], "sched": f[b"sched"],
            "ov": f.get(b"ov", b"allow").decode(), "max": int(f.get(b"max", b"3")),
            "next": nxt if nxt >= 0 else None, "st": state, "t": int(f[b"t"]),
            "ms": ev[0], "seq": ev[1], **_meta(f)})

    def __len__(self) -> int:
        return len(self.events)

    def hold_back(self, since: float, limit: int) -> Batch:
        """Move the runs not ended yet whose first event was read at or after ``since``,
        with all their events, to a new batch (up to ``limit`` events), and return it.
        Their events stay unacked until that batch commits, so a run whose events span
        batches (queued, running, then ended a few hundred events later in its stream) is
        mostly written once, ended, instead of inserted and then updated twice."""
        nxt = Batch()
        for run_id, row in self.runs.items():
            if (row.read_at >= since and row.fields[b"st"] not in ENDED
                    and nxt.held + len(row.events) <= limit):
                nxt.runs[run_id] = row
                nxt.events += row.events
                nxt.held += len(row.events)
        if nxt.held:
            for run_id in nxt.runs:
                del self.runs[run_id]
            moved = {id(e) for e in nxt.events}
            self.events = [e for e in self.events if id(e) not in moved]
        return nxt


STAGE = """
CREATE TEMP TABLE IF NOT EXISTS stage_runs (run_id text, job_id text, seq text, tenant text,
  queue text, status text, attempt text, slot_ms text, manual bool, enq_ms text,
  start_ms text, end_ms text, worker text, error text, result text, ev_ms bigint,
  ev_seq bigint) ON COMMIT DELETE ROWS
"""
COPY_RUNS = f"COPY stage_runs ({', '.join(RUN_COLS)}) FROM STDIN"


def _ts(col: str) -> str:
    return f"to_timestamp({col}::float8 / 1000)"


def _forward(table: str, newer: str, cols: tuple[str, ...], *, coalesce: bool) -> str:
    """SET clauses taking EXCLUDED's value where ``newer`` holds; with ``coalesce`` a
    newer NULL keeps the old value and an older value fills an old NULL."""
    if not coalesce:
        return ",\n  ".join(f"{c} = CASE WHEN {newer} THEN EXCLUDED.{c} ELSE {table}.{c} END"
                            for c in cols)
    return ",\n  ".join(f"{c} = CASE WHEN {newer} THEN COALESCE(EXCLUDED.{c}, {table}.{c})"
                        f" ELSE COALESCE({table}.{c}, EXCLUDED.{c}) END" for c in cols)


_RUN_NEWER = "(EXCLUDED.ev_ms, EXCLUDED.ev_seq) > (runs.ev_ms, runs.ev_seq)"
# ORDER BY: concurrent archivers lock rows in one order, so they never deadlock.
UPSERT_RUNS = f"""
INSERT INTO runs (run_id, job_id, seq, tenant, queue, status, attempt, slot_at, manual,
                  enqueued_at, started_at, finished_at, worker, error, result, ev_ms, ev_seq)
SELECT run_id, job_id, seq::bigint, tenant, queue, status, attempt::int, {_ts('slot_ms')},
       manual, {_ts('enq_ms')}, {_ts('start_ms')}, {_ts('end_ms')}, worker, error, result,
       ev_ms, ev_seq
FROM stage_runs ORDER BY run_id
ON CONFLICT (run_id, slot_at) DO UPDATE SET
  {_forward('runs', _RUN_NEWER, ('status', 'attempt', 'ev_ms', 'ev_seq'), coalesce=False)},
  {_forward('runs', _RUN_NEWER, ('tenant', 'queue', 'enqueued_at', 'started_at',
                                 'finished_at', 'worker', 'error', 'result'), coalesce=True)},
  manual = runs.manual OR EXCLUDED.manual
"""

_JOB_NEWER = "(EXCLUDED.ev_ms, EXCLUDED.ev_seq) > (jobs.ev_ms, jobs.ev_seq)"
_DEF_NEWER = "(jobs.version IS NULL OR EXCLUDED.version > jobs.version)"
_DEF_COLS = ("version", "tenant", "queue", "task", "spec", "trigger", "overlap",
             "max_attempts", "next_ms", "updated_at", "name", "labels", "webhook",
             "max_runs", "concurrency", "priority")
# The unique key is fixed at creation and only the creating event carries it.
UPSERT_JOB = f"""
INSERT INTO jobs (job_id, version, tenant, queue, task, spec, trigger, overlap, max_attempts,
                  next_ms, state, created_at, updated_at, ev_ms, ev_seq, name, labels,
                  unique_key, webhook, max_runs, concurrency, priority)
VALUES (%(j)s, %(v)s, %(tn)s, %(q)s, %(task)s, %(spec)s, %(sched)s, %(ov)s, %(max)s, %(next)s,
        %(st)s, {_ts('%(t)s')}, {_ts('%(t)s')}, %(ms)s, %(seq)s, %(nm)s, %(lb)s::jsonb,
        %(uk)s, %(hk)s::jsonb, %(maxr)s, %(conc)s, %(prio)s)
ON CONFLICT (job_id) DO UPDATE SET
  {_forward('jobs', _DEF_NEWER, _DEF_COLS, coalesce=False)},
  {_forward('jobs', _DEF_NEWER, ('unique_key',), coalesce=True)},
  {_forward('jobs', _JOB_NEWER, ('state', 'ev_ms', 'ev_seq'), coalesce=False)},
  created_at = LEAST(jobs.created_at, EXCLUDED.created_at)
WHERE {_DEF_NEWER} OR {_JOB_NEWER}
"""
# A state event may come before the job's creation (another archiver holds that batch):
# it then starts a row of its own that the definition fills in later.
UPSERT_STATE = """
INSERT INTO jobs (job_id, state, ev_ms, ev_seq) VALUES (%s, %s, %s, %s)
ON CONFLICT (job_id) DO UPDATE SET state = EXCLUDED.state, ev_ms = EXCLUDED.ev_ms,
  ev_seq = EXCLUDED.ev_seq
WHERE (EXCLUDED.ev_ms, EXCLUDED.ev_seq) > (jobs.ev_ms, jobs.ev_seq)
"""
INSERT_VERSION = f"""
INSERT INTO job_versions (job_id, version, tenant, queue, task, spec, trigger, state,
                          created_at)
VALUES (%(j)s, %(v)s, %(tn)s, %(q)s, %(task)s, %(spec)s, %(sched)s, %(st)s, {_ts('%(t)s')})
ON CONFLICT DO NOTHING
"""
INSERT_SKIP = f"""
INSERT INTO skips (job_id, slot_at, why, missed, at, ev_ms, ev_seq)
VALUES (%s, {_ts('%s')}, %s, %s, {_ts('%s')}, %s, %s) ON CONFLICT DO NOTHING
"""
INSERT_REJECTED = """
INSERT INTO rejected_events (shard, entry_id, fields, error) VALUES (%s, %s, %s, %s)
ON CONFLICT DO NOTHING
"""


async def write_batch(conn: Conn, batch: Batch, *, stage_ready: bool) -> bool:
    """One transaction: runs through COPY into the session's staging table and one upsert,
    then job versions, job states and skips. ``stage_ready``: this session already created
    the staging table (a rolled-back transaction drops it again). Returns whether it has
    it now."""
    async with conn.transaction():
        if batch.runs:
            if not stage_ready:
                await conn.execute(STAGE)
                stage_ready = True
            lines = [row.copy_line() for row in batch.runs.values()]
            async with conn.cursor() as cur:
                async with cur.copy(COPY_RUNS) as copy:
                    await copy.write(b"\n".join(lines) + b"\n")
            await conn.execute(UPSERT_RUNS)
        async with conn.cursor() as cur:
            if batch.versions:
                versions = sorted(batch.versions, key=lambda v: (v["j"], v["v"]))
                await cur.executemany(INSERT_VERSION, versions)
                await cur.executemany(UPSERT_JOB, versions)
            if batch.states:
                await cur.executemany(UPSERT_STATE, sorted(batch.states))
            if batch.skips:
                await cur.executemany(INSERT_SKIP, batch.skips)
            if batch.rejected:
                await cur.executemany(INSERT_REJECTED, batch.rejected)
    return stage_ready


async def write_isolating(conn: Conn, batch: Batch) -> list[str]:
    """Write a batch PostgreSQL rejected as a whole one event per transaction, setting
    aside (in `rejected_events`) each event it still rejects; returns their ids."""
    bad = []
    for event in batch.events:
        single = Batch()
        single.add(event)
        try:
            await write_batch(conn, single, stage_ready=False)
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            aside = Batch()
            aside.reject(event, str(exc).strip())
            await write_batch(conn, aside, stage_ready=False)
            bad.append(event[1])
    if bad:
        log.error("set aside %d event(s) PostgreSQL rejects in rejected_events: %s",
                  len(bad), ", ".join(bad[:10]))
    return bad
