"""What a user sees when something goes wrong in a run or a job operation: a failed
run's stored error (with a capped traceback) and its WARNING log line, the worker's
start line, and refusals naming the job's state. On fakeredis and a real redis-server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from rsched.clock import FakeClock
from rsched.errors import ERROR_MAX, InvalidTransition, describe
from rsched.models import Every, JobDef, RetryPolicy, RunStatus
from rsched.tasks import TaskRegistry
from tests.support import system


def _parse_config(text: str) -> dict[str, str]:
    if "=" not in text:
        raise ValueError(f"not a config: {text}")
    return dict(line.split("=", 1) for line in text.splitlines())


@pytest.fixture
def reg() -> TaskRegistry:
    r = TaskRegistry()

    @r.task(name="parse")
    def parse(text: str) -> dict[str, str]:
        return _parse_config(text)

    @r.task(name="ok")
    async def ok() -> None:
        return None

    return r


async def test_failed_run_stores_a_capped_traceback_and_logs_it_at_warning(
        make_any_engine: Callable[..., Any], clock: FakeClock, reg: TaskRegistry,
        caplog: pytest.LogCaptureFixture) -> None:
    engine = await make_any_engine()
    client, worker = system.client(engine, clock, reg), system.worker(engine, clock, reg)
    scheduler = system.scheduler(engine, clock)
    await worker.start()
    no_retry = RetryPolicy(max_attempts=1)
    short = await client.schedule(JobDef(task="parse", args=["oops"], retry=no_retry))
    huge = await client.schedule(JobDef(task="parse", args=["x" * 50_000], retry=no_retry))
    await scheduler.tick()
    with caplog.at_level(logging.WARNING, logger="rsched.roles.worker"):
        while (await worker.tick(block_ms=None)).started:
            pass
        await worker.drain()
    [run] = await client.runs(short)
    assert run.status is RunStatus.DEAD
    error = run.error or ""
    lines = error.splitlines()
    assert lines[0] == "ValueError: not a config: oops"
    assert lines[1] == "Traceback (most recent call last):"
    assert "in _parse_config" in error, "the frame that raised is named"
    [big] = await client.runs(huge)
    assert (big.error or "").startswith("ValueError: not a config: xxx")
    assert len(big.error or "") <= ERROR_MAX
    assert "in _parse_config" in (big.error or ""), "the cut keeps the traceback's end"
    logged = [r for r in caplog.records if r.levelno == logging.WARNING
              and f"{run.id} attempt 1 failed" in r.getMessage()]
    assert logged and "in _parse_config" in logged[0].getMessage()


async def test_worker_logs_its_tasks_queues_and_concurrency_at_start(
        make_any_engine: Callable[..., Any], clock: FakeClock, reg: TaskRegistry,
        caplog: pytest.LogCaptureFixture) -> None:
    engine = await make_any_engine()
    worker = system.worker(engine, clock, reg, queues=["mail", "default"], concurrency=7)
    with caplog.at_level(logging.INFO, logger="rsched.roles.worker"):
        await worker.start()
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("worker ")]
    assert "queues mail,default" in line and "concurrency 7" in line
    assert "tasks ok, parse" in line
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rsched.roles.worker"):
        await system.worker(engine, clock, TaskRegistry()).start()
    [bare] = [r for r in caplog.records if r.getMessage().startswith("worker ")]
    assert bare.levelno == logging.WARNING and "tasks none" in bare.getMessage()


@pytest.mark.parametrize(("first", "then", "words"), [
    ("cancel", "pause", "is cancelled: only an active job can be paused"),
    ("cancel", "resume", "is cancelled: only a paused job can be resumed"),
    ("cancel", "cancel", "is cancelled: it was cancelled already"),
    ("cancel", "run_now", "is cancelled: a cancelled job does not run"),
    ("pause", "pause", "is paused: only an active job can be paused"),
    (None, "resume", "is active: only a paused job can be resumed"),
])
async def test_refused_transition_names_the_jobs_current_state(
        make_any_engine: Callable[..., Any], clock: FakeClock, reg: TaskRegistry,
        first: str | None, then: str, words: str) -> None:
    client = system.client(await make_any_engine(), clock, reg)
    job = await client.schedule(JobDef(id="nightly", task="ok",
                                       schedule=Every(every_ms=60_000)))
    if first is not None:
        await getattr(client, first)(job)
    with pytest.raises(InvalidTransition) as refused:
        await getattr(client, then)(job)
    assert str(refused.value).endswith(f"job 'nightly' {words}"), str(refused.value)


def test_describe_cuts_a_long_traceback_in_the_middle() -> None:
    def inner() -> None:
        raise KeyError("missing")

    def outer() -> None:
        inner()

    with pytest.raises(KeyError) as caught:
        outer()
    whole = describe(caught.value)
    assert "in outer" in whole and len(whole) < ERROR_MAX
    cut = describe(caught.value, limit=200)
    assert len(cut) <= 200
    lines = cut.splitlines()
    assert lines[:2] == ["KeyError: 'missing'", "..."] and lines[-1] == lines[0]
    assert "Traceback (most recent" not in cut and cut.endswith(whole[-120:]), \
        "the start goes, the end (the frame that raised) stays"
