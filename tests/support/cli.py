"""`rsched` in-process through typer's CliRunner (much faster than a subprocess), with a
keyspace of its own per test, and a Client on the same keyspace for setup and checks.

Owns: invoking the app with RSCHED_* settings and running client coroutines from sync
tests (the CLI runs its own event loop, so CLI tests are not async). Must not: decide
what a test asserts.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from click.testing import Result
from typer.testing import CliRunner

from rsched.cli import app
from rsched.client import Client
from rsched.settings import Settings

T = TypeVar("T")


class Cli:
    """One keyspace (prefix) on the test Redis; ``run`` invokes `rsched`, ``client``
    runs a coroutine with a Client on the same keyspace."""

    def __init__(self, redis_url: str, shards: int = 4) -> None:
        self.env = {"RSCHED_REDIS__URL": redis_url,
                    "RSCHED_REDIS__PREFIX": f"c{uuid.uuid4().hex[:10]}",
                    "RSCHED_REDIS__SHARDS": str(shards)}

    def run(self, *args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(app, list(args), env=self.env, input=input,
                                  catch_exceptions=False)

    def ok(self, *args: str, input: str | None = None) -> Result:
        out = self.run(*args, input=input)
        assert out.exit_code == 0, (args, out.stdout, out.stderr)
        return out

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json").stdout)

    def bad(self, *args: str, code: int = 2, input: str | None = None) -> str:
        """Run a command that must fail with ``code`` and one line on stderr; the line."""
        out = self.run(*args, input=input)
        assert out.exit_code == code, (args, out.exit_code, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr + out.stdout
        if "Usage:" not in out.stderr:  # click's own usage errors are a short block
            assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: "), out.stderr
        return out.stderr

    def client(self, fn: Callable[[Client], Awaitable[T]]) -> T:
        async def go() -> T:
            c = await Client.connect(Settings.from_env(self.env))
            try:
                return await fn(c)
            finally:
                await c.close()

        return asyncio.run(go())


def fail_runs(cli: Cli, queue: str = "default") -> None:
    """A real worker takes every queued run of ``queue``; task ``boom`` fails fatally, so
    each of its runs is dead-lettered."""
    from rsched.clock import FakeClock
    from rsched.errors import Fatal
    from rsched.tasks import TaskRegistry
    from tests.support import system

    reg = TaskRegistry()

    @reg.task(name="boom")
    async def boom() -> None:
        raise Fatal("it broke")

    async def go(c: Client) -> None:
        w = system.worker(c.engine, FakeClock(), reg, queues=[queue])
        await w.start()
        await w.tick(block_ms=None)
        await w.drain()
        await w.stop(0)

    cli.client(go)
