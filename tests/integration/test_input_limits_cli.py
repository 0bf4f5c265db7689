"""Input limits end to end: the largest accepted values survive Lua as integers, and the
command line rejects out-of-range input with one line and exit code 2."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from rsched.clock import FakeClock
from rsched.errors import ValidationError
from rsched.limits import MAX_EVERY_MS, MAX_TIME_MS
from rsched.models import At, Every, JobDef
from rsched.settings import Settings
from tests.support import system
from tests.support.procs import run_cli


async def test_largest_times_are_stored_and_read_back_as_integers(
        make_engine: Callable[..., Any], redis_url: str, prefix: str) -> None:
    engine = await make_engine()
    clock = FakeClock()
    client = system.client(engine, clock)
    every = await client.schedule(JobDef(id="decade", task="t",
                                         schedule=Every(every_ms=MAX_EVERY_MS)))
    at = await client.schedule(JobDef(id="last", task="t", schedule=At(at_ms=MAX_TIME_MS)))
    await system.fire_until_idle(system.scheduler(engine, clock))  # fire_due writes `next`
    assert (await client.get(every)).next_ms == clock.ms + MAX_EVERY_MS
    assert (await client.get(at)).next_ms == MAX_TIME_MS
    with pytest.raises(ValidationError, match="every_ms"):
        await client.schedule(JobDef(task="t", schedule=Every(every_ms=10**18)))
    env = {"RSCHED_REDIS__URL": redis_url, "RSCHED_REDIS__PREFIX": prefix,
           "RSCHED_REDIS__SHARDS": str(engine.shards)}
    for job_id in (every, at):
        # a traceback before, on float-formatted ints
        out = run_cli("jobs", "show", job_id, "--json", env=env)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["job"]["id"] == job_id


@pytest.mark.parametrize("args, message", [
    (["--every-s", "1e30"], "interval"),
    (["--every-s", "inf"], "interval"),
    (["--every-s", "nan"], "interval"),
    (["--every-s", "1e15"], "interval"),
    (["--every-s", "0"], "interval"),
    (["--every-s", "1", "--count", "0"], "count"),
    (["--every-s", "1", "--count", "100000000"], "count"),
    (["--cron", "*/1000000000 * * * * *"], "step"),
    (["--cron", "0 0 * * *", "--tz", "A" * 300], "tz"),
    (["--cron", "0 0 * * *", "--tz", "Nowhere/Else"], "time zone"),
    (["--cron", "0 0 * * *", "--every-s", "1"], "exactly one"),
])
def test_preview_rejects_out_of_range_input_in_one_line(args: list[str], message: str) -> None:
    # No Redis listens on port 1: input errors are found before any connection.
    out = run_cli("jobs", "preview", *args, env={"RSCHED_REDIS__URL": "redis://127.0.0.1:1/0"})
    assert out.returncode == 2, out
    assert out.stderr.startswith("error: ") and message in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1 and out.stdout == ""


def test_preview_prints_up_to_1000_fires(redis_url: str) -> None:
    out = run_cli("jobs", "preview", "--every-s", "0.001", "--count", "1000",
                  env={"RSCHED_REDIS__URL": redis_url})
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.split()) == 1000


def test_client_rejects_a_10_mib_argument(redis_url: str) -> None:
    settings = Settings.from_env({"RSCHED_REDIS__URL": redis_url,
                                  "RSCHED_REDIS__PREFIX": f"t{uuid.uuid4().hex[:8]}"})

    async def go() -> None:
        from rsched.client import Client

        client = await Client.connect(settings)
        try:
            with pytest.raises(ValidationError, match="1 MiB"):
                await client.schedule(JobDef(task="t", args=["x" * (10 << 20)]))
        finally:
            await client.close()

    asyncio.run(go())
