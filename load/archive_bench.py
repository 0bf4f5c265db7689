"""Archive throughput: how fast archivers drain run events into PostgreSQL.

Pre-fills the events streams with the three events of N runs (queued, running, succeeded,
exactly as the Lua scripts write them), then times one Archiver draining them into a
private PostgreSQL (fsync off, as for the test fixtures) until every event is acked.

    python -m load.archive_bench --runs 100000 --batch 5000
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
from rsched.devservers import PostgresServer, RedisServer
from rsched.engine import Engine
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


async def drain(archiver: Archiver) -> int:
    """Tick as `rsched archiver` does (each batch commits in the background while the next
    is read) until the streams are empty and the last commit is acked."""
    events = 0
    while True:
        events += (await archiver.tick(block_ms=None)).events
        if archiver.idle():
            return events


def _drain(redis_url: str, dsn: str, batch: int, consumer: str) -> tuple[int, float]:
    """One archiver process: drain the events streams; returns (events, CPU seconds)."""

    async def go() -> int:
        settings = Settings(redis=RedisSettings(url=redis_url, prefix="bench", shards=16))
        engine = await Engine.connect(settings)  # as `rsched archiver` connects (hiredis)
        archiver = Archiver(engine, ArchiverSettings(dsn=dsn, batch=batch, flush_s=0),
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


async def bench(runs: int, batch: int, archivers: int = 1) -> dict[str, Any]:
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
        await prefill(engine, runs)
        fill_s = time.perf_counter() - t0
        assert redis_server.proc is not None
        servers = [redis_server.proc.pid, _postmaster_pid(pg_server)]
        server_cpu0 = [_cpu_s(pid) for pid in servers]
        backends = _children(servers[1])
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        with ProcessPoolExecutor(archivers, mp_context=mp.get_context("fork")) as pool:
            jobs = [pool.submit(_drain, redis_server.url, pg_server.dsn, batch, f"bench{i}")
                    for i in range(archivers)]
            drained = [j.result() for j in jobs]
        elapsed = time.perf_counter() - t0
        _wait_reaped(servers[1], backends)  # their CPU then counts in postmaster's children
        server_cpu = [_cpu_s(pid) - c0 for pid, c0 in zip(servers, server_cpu0, strict=True)]
        events = sum(e for e, _ in drained)
        cpu = sum(c for _, c in drained)
        conn = await pg.connect(pg_server.dsn)
        rows = (await (await conn.execute("SELECT count(*) FROM runs")).fetchone() or (0,))[0]
        await conn.close()
        await redis.aclose()
        return {"runs": runs, "events": events, "rows": rows, "batch": batch,
                "archivers": archivers,
                "prefill_s": round(fill_s, 2), "archive_s": round(elapsed, 2),
                "rows_per_s": round(rows / elapsed), "events_per_s": round(events / elapsed),
                "archiver_cpu_s": round(cpu, 2), "redis_cpu_s": round(server_cpu[0], 2),
                "postgres_cpu_s": round(server_cpu[1], 2), "cores": os.cpu_count(),
                "load_before": round(load_before, 2)}
    finally:
        redis_server.cleanup()
        pg_server.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5000, help="events per commit")
    parser.add_argument("--archivers", type=int, default=1, help="archiver processes")
    args = parser.parse_args()
    result = asyncio.run(bench(args.runs, args.batch, args.archivers))
    print(json.dumps(result, indent=2))
    print(f"| {result['runs']:,} runs | {result['archivers']} archiver(s) |"
          f" batch {result['batch']} | {result['archive_s']} s |"
          f" {result['rows_per_s']:,} rows/s | {result['events_per_s']:,} events/s |"
          f" CPU s archiver/PostgreSQL/Redis {result['archiver_cpu_s']}/"
          f"{result['postgres_cpu_s']}/{result['redis_cpu_s']} | load {result['load_before']} |")


if __name__ == "__main__":
    main()
