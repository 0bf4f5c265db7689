"""A fresh, migrated database per test on the session's private PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from rsched import pg


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
