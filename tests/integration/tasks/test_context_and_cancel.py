"""Python tasks' run context and results; cancelling a running Python, HTTP or shell run."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from rsched.errors import Retry
from rsched.models import JobDef, RetryPolicy, RunStatus
from rsched.task_kinds import HttpTask, ShellTask
from rsched.tasks import RunContext, TaskRegistry
from tests.integration.tasks.test_shell_tasks import alive
from tests.support import system
from tests.support.http_target import Target


async def test_a_handler_reads_its_run_and_its_result_is_recorded(make_system: Any) -> None:
    reg = TaskRegistry()

    @reg.task(name="whoami")
    async def whoami(n: int, ctx: RunContext) -> dict[str, Any]:
        if ctx.attempt == 1:
            raise Retry(0)
        return {"n": n, "run_id": ctx.run_id, "job_id": ctx.job_id, "attempt": ctx.attempt,
                "tenant": ctx.tenant, "queue": ctx.queue, "slot_ms": ctx.slot_ms,
                "cancelled": ctx.cancelled()}

    sys_ = await make_system(reg)
    job = await sys_.client.schedule(JobDef(task="whoami", args=[5], tenant="acme"))
    await sys_.step()
    await sys_.step()  # the retry, due at once
    run = await sys_.last_run(job)
    assert run.status is RunStatus.SUCCEEDED
    assert run.result == {"n": 5, "run_id": run.id, "job_id": job, "attempt": 2,
                          "tenant": "acme", "queue": "default", "slot_ms": run.slot_ms,
                          "cancelled": False}
    assert await sys_.client.run(run.id) == run


async def test_a_result_too_large_is_recorded_truncated_and_still_json(
        make_system: Any) -> None:
    reg = TaskRegistry()

    @reg.task(name="big")
    def big() -> list[str]:
        return ["y" * 1000] * 100

    class Thing:
        pass

    @reg.task(name="odd")
    def odd() -> object:  # not JSON: recorded as its repr
        return Thing()

    sys_ = await make_system(reg)
    job = await sys_.client.schedule(JobDef(task="big"))
    other = await sys_.client.schedule(JobDef(task="odd"))
    await sys_.step()
    result = (await sys_.last_run(job)).result
    assert result["truncated"] is True and result["bytes"] > 100_000
    assert result["head"].startswith('["yyy') and len(result["head"]) <= 64 * 1024
    assert "Thing object" in (await sys_.last_run(other)).result


async def _started(sys_: Any, job: str) -> str:
    await system.fire_until_idle(sys_.scheduler)
    run_id = (await sys_.last_run(job)).id
    await sys_.wait_status(run_id, RunStatus.RUNNING, 5)
    return run_id


async def _cancel_within_a_second(sys_: Any, run_id: str) -> None:
    assert await sys_.client.cancel_run(run_id) is False  # running: its worker is told
    await sys_.wait_status(run_id, RunStatus.CANCELLED, 1.0)


async def test_cancelling_a_running_python_run(make_system: Any, run_loop: Any) -> None:
    reg = TaskRegistry()
    began = asyncio.Event()
    saw_cancel = threading.Event()

    @reg.task(name="forever")
    async def forever() -> None:
        began.set()
        await asyncio.sleep(3600)

    @reg.task(name="polite")
    def polite(ctx: RunContext) -> None:  # a thread: it stops when it sees cancelled()
        while not ctx.cancelled():
            time.sleep(0.01)
        saw_cancel.set()

    sys_ = await make_system(reg, block_s=0.05)
    run_loop(sys_.worker)
    job = await sys_.client.schedule(JobDef(task="forever", timeout_s=None))
    run_id = await _started(sys_, job)
    await asyncio.wait_for(began.wait(), 5)
    await _cancel_within_a_second(sys_, run_id)
    job = await sys_.client.schedule(JobDef(task="polite", timeout_s=None))
    await _cancel_within_a_second(sys_, await _started(sys_, job))
    assert await asyncio.to_thread(saw_cancel.wait, 5)


async def test_cancelling_a_running_http_run(make_system: Any, run_loop: Any,
                                             target: Target) -> None:
    sys_ = await make_system(block_s=0.05)
    run_loop(sys_.worker)
    job = await sys_.client.schedule(JobDef(http=HttpTask(url=target.url("/slow"))))
    run_id = await _started(sys_, job)
    assert await asyncio.to_thread(target.arrived.wait, 5)
    await _cancel_within_a_second(sys_, run_id)


async def test_cancelling_a_running_shell_run_kills_its_group(
        make_system: Any, run_loop: Any, tmp_path: Path) -> None:
    sys_ = await make_system(block_s=0.05, queues=["shell"], allow_shell=True)
    run_loop(sys_.worker)
    job = await sys_.client.schedule(JobDef(
        shell=ShellTask(argv=["sleep 60 & echo $! > pid; sleep 60"], shell=True,
                        cwd=str(tmp_path)), queue="shell", retry=RetryPolicy(max_attempts=1)))
    run_id = await _started(sys_, job)
    for _ in range(500):
        if (tmp_path / "pid").exists() and (tmp_path / "pid").read_text().strip():
            break
        await asyncio.sleep(0.01)
    await _cancel_within_a_second(sys_, run_id)
    assert not alive(int((tmp_path / "pid").read_text()))


async def test_a_missed_cancel_signal_is_caught_by_the_next_lease_extension(
        make_system: Any) -> None:
    """No run loop, so nobody hears the pub/sub signal: the cancel flag in the run hash
    reaches the worker through extend_runs (SIGNALLED) and the run still ends cancelled."""
    reg = TaskRegistry()
    began = asyncio.Event()

    @reg.task(name="forever")
    async def forever() -> None:
        began.set()
        await asyncio.sleep(3600)

    sys_ = await make_system(reg, lease_s=0.6, heartbeat_s=0.1, block_s=0.05)
    job = await sys_.client.schedule(JobDef(task="forever", timeout_s=None))
    await system.fire_until_idle(sys_.scheduler)
    assert (await sys_.worker.tick(block_ms=None)).started == 1
    await asyncio.wait_for(began.wait(), 5)
    run_id = (await sys_.last_run(job)).id
    assert await sys_.client.cancel_run(run_id) is False  # running: a signal nobody hears
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and sys_.worker.inflight:
        await sys_.worker.tick(block_ms=None)  # maintenance extends leases every 0.2 s
        await asyncio.sleep(0.05)
    await sys_.worker.flush()
    assert (await sys_.client.run(run_id)).status is RunStatus.CANCELLED
