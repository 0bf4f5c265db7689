"""The tasks the engine benchmark runs, each reporting when its body started.

Owns: ``bench.noop`` and the realistic variants a user's task would be: one async Redis
round trip (redis-py asyncio, the task's own client, as a user writes it), one HTTP call
to a local server (httpx), a 10 ms ``asyncio.sleep`` and a 10 ms blocking sleep (a plain
function: the worker runs it in its thread pool). Must not: touch the engine.

Every variant returns the host wall clock in microseconds at the moment its body began,
stored as the run's result: the benchmark subtracts the slot (Redis TIME ms; same
machine, same clock) to get the start lag seen by the task itself. The clients are made
once per worker process, lazily, from ``BENCH_REDIS_URL`` / ``BENCH_HTTP_URL`` (set by
load/bench.py; these are not RSCHED_* settings).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from rsched.tasks import task

_clients: dict[str, Any] = {}


def _now_us() -> int:
    # host wall clock in µs, stored as the run's JSON result (the bench reads it back)
    return time.time_ns() // 1000


@task(name="bench.noop")
async def noop() -> int:
    return _now_us()


def _redis() -> Any:
    client = _clients.get("redis")
    if client is None:
        import redis.asyncio as aioredis

        # What a user writes: one module-level client with redis-py's default pool (it
        # opens one connection per concurrent command: see docs/benchmarks.md).
        max_conn = os.environ.get("BENCH_REDIS_MAX_CONNECTIONS")
        kw: dict[str, Any] = {}
        if max_conn:  # a blocking pool of that size, the sizing docs/operations.md advises
            kw["connection_pool"] = aioredis.BlockingConnectionPool.from_url(
                os.environ["BENCH_REDIS_URL"], max_connections=int(max_conn), timeout=None)
            client = _clients["redis"] = aioredis.Redis(**kw)
        else:
            client = _clients["redis"] = aioredis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    return client


@task(name="bench.redis")
async def redis_roundtrip() -> int:
    started = _now_us()
    await _redis().get("bench:task-key")
    return started


def _http() -> Any:
    client = _clients.get("http")
    if client is None:
        import httpx

        limits = httpx.Limits(max_connections=int(os.environ.get("BENCH_HTTP_MAX_CONNECTIONS",
                                                                 "100")))
        client = _clients["http"] = httpx.AsyncClient(base_url=os.environ["BENCH_HTTP_URL"],
                                                      limits=limits)
    return client


@task(name="bench.http")
async def http_call() -> int:
    started = _now_us()
    (await _http().get("/")).raise_for_status()
    return started


@task(name="bench.asleep")
async def async_sleep() -> int:
    started = _now_us()
    await asyncio.sleep(0.01)
    return started


@task(name="bench.sleep")
def sync_sleep() -> int:
    started = _now_us()
    time.sleep(0.01)
    return started
