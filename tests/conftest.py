"""Fixtures: a private redis-server (or RSCHED_TEST_REDIS_URL), a private PostgreSQL,
and factories for engines/clients isolated by a unique key prefix per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis

from rsched.archive import pg
from rsched.clock import FakeClock
from rsched.devservers import PostgresServer, RedisServer
from rsched.engine import Engine
from rsched.settings import RedisSettings


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    external = os.environ.get("RSCHED_TEST_REDIS_URL")
    if external:
        yield external
        return
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    server = PostgresServer().init().start()
    try:
        yield server.dsn
    finally:
        server.cleanup()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses: tests share one server but never see each other."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Any]:
    client = aioredis.Redis.from_pool(aioredis.BlockingConnectionPool.from_url(
        redis_url, max_connections=64))  # from_pool: aclose() closes the pool too
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_engine(redis: Any, prefix: str) -> Callable[..., Any]:
    """Engines on the real server; several engines on one prefix act as several processes."""

    async def make(shards: int = 4, client: Any = None) -> Engine:
        engine = Engine(client or redis, RedisSettings(prefix=prefix, shards=shards))
        await engine.start()
        return engine

    return make


@pytest.fixture(params=["fake", "real"])
async def make_any_engine(request: pytest.FixtureRequest, redis_url: str,
                          prefix: str) -> AsyncIterator[Callable[..., Any]]:
    """Like make_engine, once on fakeredis (fresh FakeServer) and once on the real server."""
    import fakeredis

    clients: list[Any] = []
    server = fakeredis.FakeServer()

    async def make(shards: int = 4) -> Engine:
        if request.param == "fake":
            client = fakeredis.FakeAsyncRedis(server=server)
        else:
            client = aioredis.Redis.from_url(redis_url)
        clients.append(client)
        engine = Engine(client, RedisSettings(prefix=prefix, shards=shards))
        await engine.start()
        return engine

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def archive_dsn(pg_dsn: str) -> AsyncIterator[str]:
    name = f"a{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = pg_dsn.rsplit("/", 1)[0] + f"/{name}"
    conn = await pg.connect(dsn)
    await pg.migrate(conn)
    await conn.commit()
    await conn.close()
    yield dsn
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as admin:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
async def db(archive_dsn: str) -> AsyncIterator[Any]:
    conn = await psycopg.AsyncConnection.connect(archive_dsn, autocommit=True)
    yield conn
    await conn.close()
