"""Fixtures of the archive suites: a private redis-server for tests that wipe Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from rsched.devservers import RedisServer


@pytest.fixture
async def own_redis() -> AsyncIterator[tuple[str, Any]]:
    server = RedisServer().start()  # FLUSHALL must not touch the shared test server
    client = aioredis.Redis.from_url(server.url)
    try:
        yield server.url, client
    finally:
        await client.aclose()
        server.cleanup()
