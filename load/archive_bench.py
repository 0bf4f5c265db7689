"""Archive throughput: how fast archivers drain run events into PostgreSQL.

Pre-fills the events streams, then times archivers draining them into a private
PostgreSQL (fsync off, as for the test fixtures) until every event is acked. Two shapes:

- ``runs`` (--runs N): each run's three events (queued, running, succeeded, as the Lua
  scripts write them) back to back, so a batch folds each run into one row: the best case.
- ``real`` (--jobs J --slots S): what a backlog of J every-second jobs looks like after S
  seconds: J jobs created (the real script), then per slot and per shard, as the engine
  writes them, the scheduler's queued events of every job, then the workers' running and
  succeeded events in batches (a run's events lie ~ a slot's worth of events apart, so
  they land in different batches).

    python -m load.archive_bench --runs 100000 --batch 5000
    python -m load.archive_bench --shape real --jobs 2500 --slots 40
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from rsched.archive import pg
from rsched.archive.archiver import Archiver
from rsched.client import Client
from rsched.devservers import PostgresServer, RedisServer
from rsched.engine import Engine
from rsched.models import Every, JobDef
from rsched.roles import runner
from rsched.settings import ArchiverSettings, RedisSettings, Settings


async def prefill(engine: Engine, runs: int) -> None:
    now = await engine.clock().now_ms()
    pipe = engine.core.redis.pipeline(transaction=False)
    for i in range(runs):
        k = engine.core.shard_keys[i % engine.shards]
        run, job = f"job{i}:1", f"job{i}"
        common: dict[str, Any] = {"t": now, "k": "run", "r": run, "j": job, "slot": now}
        pipe.xadd(k.events, {**common, "st": "queued", "att": 1, "q": "default",
                             "tn": "default", "enq": now})
        pipe.xadd(k.events, {**common, "st": "running", "att": 1, "start": now + 1,
                             "w": "bench-worker"})
        pipe.xadd(k.events, {**common, "st": "succeeded", "att": 1, "end": now + 2,
                             "res": ""})
        if i % 2000 == 1999:
            await pipe.execute()
    await pipe.execute()


async def prefill_real(engine: Engine, jobs: int, slots: int, chunk: int = 200) -> int:
    """Events of ``jobs`` every-second jobs over ``slots`` slots, interleaved per shard as
    the engine writes them (scheduler fires a shard's due jobs; workers start and finish
    runs ``chunk`` at a time across the shards, a chunk ending while the next starts).
    Returns the number of runs."""
    clock = engine.clock()
    ids = await Client(engine, clock).schedule_many(
        [JobDef(task="bench", schedule=Every(every_ms=1000)) for _ in range(jobs)])
    by_shard: dict[str, list[str]] = {}
    for job in ids:
        by_shard.setdefault(engine.keys_for(job).events, []).append(job)
    per_shard = max(1, chunk // len(by_shard))
    base = (await clock.now_ms()) // 1000 * 1000 + 1000
    pipe = engine.core.redis.pipeline(transaction=False)
    for n in range(1, slots + 1):
        slot = base + (n - 1) * 1000
        for stream, shard_jobs in by_shard.items():
            for job in shard_jobs:
                pipe.xadd(stream, {"t": slot + 2, "k": "run", "r": f"{job}:{n}", "j": job,
                                   "st": "queued", "att": 1, "q": "default", "tn": "default",
                                   "slot": slot, "enq": slot + 2})
            chunks = [shard_jobs[i:i + per_shard] for i in range(0, len(shard_jobs), per_shard)]
            for i in range(len(chunks) + 1):
                for job in chunks[i] if i < len(chunks) else ():
                    pipe.xadd(stream, {"t": slot + 5 + i, "k": "run", "r": f"{job}:{n}",
                                       "j": job, "st": "running", "att": 1,
                                       "start": slot + 5 + i, "w": "bench-worker",
                                       "slot": slot})
                for job in chunks[i - 1] if i > 0 else ():
                    pipe.xadd(stream, {"t": slot + 6 + i, "k": "run", "r": f"{job}:{n}",
                                       "j": job, "st": "succeeded", "att": 1,
                                       "end": slot + 6 + i, "res": "", "slot": slot})
        await pipe.execute()
    return jobs * slots


async def drain(archiver: Archiver) -> int:
    """Tick as `rsched archiver` does (each batch commits in the background while the next
    is read) until the streams are empty and the last commit is acked. Once nothing is
    left to read, the rest (runs held back for their ending) is flushed at once instead of
    waiting out ``flush_s``."""
    events = 0
    while True:
        before = len(archiver.batch) - archiver.batch.held
        report = await archiver.tick(block_ms=None)
        events += report.events
        if archiver.idle():
            return events
        if not report.events and len(archiver.batch) - archiver.batch.held == before:
            events += (await archiver.tick(block_ms=None, flush=True)).events


def _drain(redis_url: str, dsn: str, batch: int, consumer: str) -> tuple[int, float]:
    """One archiver process: drain the events streams; returns (events, CPU seconds)."""

    async def go() -> int:
        settings = Settings(redis=RedisSettings(url=redis_url, prefix="bench", shards=16))
        engine = await Engine.connect(settings)  # as `rsched archiver` connects (hiredis)
        archiver = Archiver(engine, ArchiverSettings(dsn=dsn, batch=batch),
                            engine.clock(), consumer)
        events = await drain(archiver)
        await archiver.close()
        await engine.close()
        return events

    runner.tune_gc_for_bulk()  # as `rsched archiver` does
    cpu0 = time.process_time()
    events = asyncio.run(go())
    return events, time.process_time() - cpu0


def _cpu_s(pid: int) -> float:
    """CPU seconds of a process and its reaped children (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> set[str]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return set(f.read().split())


def _wait_reaped(pid: int, before: set[str], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _children(pid) - before and time.monotonic() < deadline:
        time.sleep(0.05)


def _postmaster_pid(server: PostgresServer) -> int:
    with open(os.path.join(server.dir, "data", "postmaster.pid")) as f:
        return int(f.readline())


async def bench(runs: int, batch: int, archivers: int = 1, shape: str = "runs",
                jobs: int = 2500, slots: int = 40) -> dict[str, Any]:
    redis_server, pg_server = RedisServer().start(), PostgresServer().init().start()
    try:
        redis = aioredis.Redis.from_url(redis_server.url)
        engine = Engine(redis, RedisSettings(prefix="bench", shards=16))
        await engine.start()
        await engine.feed.ensure_event_groups()
        conn = await pg.connect(pg_server.dsn)
        await pg.migrate(conn)
        await pg.ensure_partitions(conn, datetime.now(UTC).date(), back_days=1)
        await conn.close()
        t0 = time.perf_counter()
        if shape == "real":
            runs = await prefill_real(engine, jobs, slots)
        else:
            await prefill(engine, runs)
        fill_s = time.perf_counter() - t0
        assert redis_server.proc is not None
        servers = [redis_server.proc.pid, _postmaster_pid(pg_server)]
        server_cpu0 = [_cpu_s(pid) for pid in servers]
        backends = _children(servers[1])
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        with ProcessPoolExecutor(archivers, mp_context=mp.get_context("fork")) as pool:
            futures = [pool.submit(_drain, redis_server.url, pg_server.dsn, batch, f"bench{i}")
                    for i in range(archivers)]
            drained = [f.result() for f in futures]
        elapsed = time.perf_counter() - t0
        _wait_reaped(servers[1], backends)  # their CPU then counts in postmaster's children
        server_cpu = [_cpu_s(pid) - c0 for pid, c0 in zip(servers, server_cpu0, strict=True)]
        events = sum(e for e, _ in drained)
        cpu = sum(c for _, c in drained)
        conn = await pg.connect(pg_server.dsn)
        rows = (await (await conn.execute("SELECT count(*) FROM runs")).fetchone() or (0,))[0]
        await asyncio.sleep(1)  # backends flush their table statistics when idle
        writes: tuple[Any, ...] = await (await conn.execute(
            "SELECT coalesce(sum(n_tup_ins), 0), coalesce(sum(n_tup_upd), 0)"
            " FROM pg_stat_user_tables WHERE relname LIKE 'runs%'")).fetchone() or (0, 0)
        await conn.close()
        await redis.aclose()
        return {"shape": shape, "runs": runs, "events": events, "rows": rows, "batch": batch,
                "archivers": archivers,
                "prefill_s": round(fill_s, 2), "archive_s": round(elapsed, 2),
                "rows_per_s": round(rows / elapsed), "events_per_s": round(events / elapsed),
                "inserts": int(writes[0]), "updates": int(writes[1]),
                "archiver_cpu_s": round(cpu, 2), "redis_cpu_s": round(server_cpu[0], 2),
                "postgres_cpu_s": round(server_cpu[1], 2), "cores": os.cpu_count(),
                "load_before": round(load_before, 2)}
    finally:
        redis_server.cleanup()
        pg_server.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("runs", "real"), default="runs")
    parser.add_argument("--runs", type=int, default=100_000, help="shape runs: runs")
    parser.add_argument("--jobs", type=int, default=2500, help="shape real: every-second jobs")
    parser.add_argument("--slots", type=int, default=40, help="shape real: seconds of them")
    parser.add_argument("--batch", type=int, default=ArchiverSettings().batch,
                        help="events per commit (default: the archiver's)")
    parser.add_argument("--archivers", type=int, default=1, help="archiver processes")
    args = parser.parse_args()
    result = asyncio.run(bench(args.runs, args.batch, args.archivers, args.shape, args.jobs,
                               args.slots))
    print(json.dumps(result, indent=2))
    print(f"| {result['shape']} | {result['runs']:,} runs | {result['archivers']} archiver(s) |"
          f" batch {result['batch']} | {result['archive_s']} s |"
          f" {result['rows_per_s']:,} rows/s | {result['events_per_s']:,} events/s |"
          f" {result['updates'] / max(1, result['rows']):.2f} |"
          f" CPU s archiver/PostgreSQL/Redis {result['archiver_cpu_s']}/"
          f"{result['postgres_cpu_s']}/{result['redis_cpu_s']} | load {result['load_before']} |")


if __name__ == "__main__":
    main()
