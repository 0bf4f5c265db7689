"""Rebuilding Redis from the PostgreSQL archive after Redis lost its data.

Owns: deciding, per archived job, its state, next slot and run counter, and which
unfinished runs to re-queue. Must not: overwrite anything still in Redis (the restore
scripts refuse), or write to PostgreSQL.

A restored job gets its name, labels, unique key and webhook back, its max runs,
concurrency and priority (with its priority's level in its queue's levels set, so workers
read its lane), and its entries in its tenant's keys: the listing, and the claims of its
name and unique key where they are still free. A re-queued run of a priority lane gets
that lane's level too.

A recurring job continues after its last archived scheduled fire: its next slot is the
first one after that fire, so no slot that already ran fires again; slots that passed
while Redis was down are then handled by the job's misfire policy, as after any downtime.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg

from rsched import codec
from rsched.engine import Engine
from rsched.models import At, Immediate
from rsched.timing import next_fire

log = logging.getLogger(__name__)

# Retention keeps a job's marks on its row before dropping its runs (pg.KEEP_JOB_MARKS);
# the retained runs say the rest. A slot counts only if it fired under the current
# version (an update restarts the schedule).
JOBS = """
SELECT j.job_id, j.state, j.version, j.spec, j.trigger, j.queue, j.tenant, j.max_attempts,
       j.overlap, j.next_ms, (extract(epoch FROM j.created_at) * 1000)::bigint,
       GREATEST(j.last_seq, (SELECT max(r.seq) FROM runs r WHERE r.job_id = j.job_id)),
       (extract(epoch FROM GREATEST(
         CASE WHEN j.last_slot_enqueued_at >= j.updated_at THEN j.last_slot_at END,
         (SELECT max(r.slot_at) FROM runs r
           WHERE r.job_id = j.job_id AND NOT r.manual AND r.enqueued_at >= j.updated_at)
       )) * 1000)::bigint,
       j.name, j.labels::text, j.unique_key, j.webhook::text, j.max_runs, j.concurrency,
       j.priority
FROM jobs j WHERE j.spec IS NOT NULL ORDER BY j.job_id
"""
# Rows a state event started whose definition never reached the archive: not restorable.
STUBS = "SELECT job_id FROM jobs WHERE spec IS NULL ORDER BY job_id"
UNFINISHED = """
SELECT r.run_id, r.queue, r.tenant, r.status, r.attempt, j.max_attempts,
       (extract(epoch FROM r.slot_at) * 1000)::bigint
FROM runs r JOIN jobs j USING (job_id)
WHERE r.status IN ('queued', 'running', 'retrying') AND j.state <> 'cancelled'
"""


@dataclass(frozen=True)
class RebuildReport:
    jobs_restored: int
    jobs_present: int  # still in Redis: left untouched
    runs_requeued: int


async def rebuild(engine: Engine, conn: psycopg.AsyncConnection[Any],
                  now_ms: int) -> RebuildReport:
    restored = present = requeued = 0
    cur = await conn.execute(JOBS)
    for row in await cur.fetchall():
        if await _restore_job(engine, row):
            restored += 1
        else:
            present += 1
    cur = await conn.execute(STUBS)
    for (job_id,) in await cur.fetchall():
        log.warning("rebuild: job %s has no archived definition; not restored", job_id)
    cur = await conn.execute(UNFINISHED)
    for run_id, queue, tenant, status, attempt, max_att, slot_ms in await cur.fetchall():
        # events carry the hash's attempt (lua/README.md): a queued or retrying row names
        # the attempt not yet run; a running attempt may have had effects, so it counts
        att = attempt + 1 if status == "running" else attempt
        if await engine.feed.restore_run(run_id, queue=queue, tenant=tenant, attempt=att,
                                    max_att=max(max_att, att), slot_ms=slot_ms,
                                    due_ms=now_ms):
            requeued += 1
    log.info("rebuild: %d job(s) restored, %d already present, %d run(s) re-queued",
             restored, present, requeued)
    return RebuildReport(restored, present, requeued)


async def _restore_job(engine: Engine, row: tuple[Any, ...]) -> bool:
    (job_id, state, version, spec, trigger, queue, tenant, max_att, overlap, first_ms,
     created_ms, runs, last_ms, name, labels, unique_key, webhook, max_runs, concurrency,
     priority) = row
    schedule = codec.decode_trigger(bytes(trigger)).schedule
    next_ms: int | None = first_ms
    if last_ms is not None:
        next_ms = None if isinstance(schedule, Immediate | At) else next_fire(schedule, last_ms)
    if state in ("active", "paused") and next_ms is None:
        state = "done"
    if not await engine.feed.restore_job(
            job_id, state=state, next_ms=next_ms, version=version, spec=bytes(spec),
            sched=bytes(trigger), queue=queue, tenant=tenant, max_att=max_att,
            overlap=overlap, runs=runs or 0, last_ms=last_ms, created_ms=created_ms,
            name=name, labels=labels, unique_key=unique_key, webhook=webhook,
            max_runs=max_runs, concurrency=concurrency, priority=priority):
        return False
    if not await engine.catalog.restore_entries(
            tenant, job_id, created_ms=created_ms, queue=queue, name=name,
            unique_key=unique_key, named=state != "cancelled"):
        log.warning("rebuild: job %s is restored without its name %r: job %s took it",
                    job_id, name, await engine.catalog.name_holder(tenant, name))
    return True
