"""Worker processes killed, frozen and stopped mid-run (real `rsched worker` subprocesses).

Each scenario starts real worker processes on a private key prefix, fires a run of
``chaos.hang_first`` (the first attempt hangs, later attempts return at once; every call
leaves ``start <pid>`` / ``done <pid>`` in a marker log), does something to the process
holding the run, and ends with the invariant check.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

import pytest

from rsched.client import Client
from rsched.engine import Engine
from rsched.models import JobDef, Run, RunStatus
from tests.support import invariants, system
from tests.support.chaos_tasks import marker_lines
from tests.support.procs import Role, Roles, eventually, sync_check, worker_ready

pytestmark = pytest.mark.chaos

QUEUES = ["default"]
LEASE_S = 1.5
# Short leases and fast reclaim so a dead worker's run moves within seconds.
FAST = {"worker__lease_s": LEASE_S, "worker__heartbeat_s": 0.3,
        "worker__reclaim_every_s": 0.2, "worker__block_s": 0.1,
        "worker__modules": ["tests.support.chaos_tasks"], "worker__queues": QUEUES}


async def _fire_hang_first(engine: Engine, marker_dir: str, first_s: float,
                           then_s: float = 0.0, task: str = "chaos.hang_first") -> str:
    """Schedule one immediate run of chaos.hang_first and fire it; returns the job id."""
    clock = engine.clock()
    client = Client(engine, clock)
    job = await client.schedule(JobDef(task=task, timeout_s=1200, kwargs={
        "marker_dir": marker_dir, "first_s": first_s, "then_s": then_s}))
    assert (await system.scheduler(engine, clock).tick()).fired == 1  # type: ignore[arg-type]
    return job


async def _run_when(engine: Engine, job: str, what: str,
                    ok: Callable[[Run], bool], timeout_s: float = 30.0) -> Run:
    async def check() -> Run | None:
        run = await engine.query.get_run(f"{job}:1")
        return run if run is not None and ok(run) else None

    return await eventually(check, f"run {job}:1 {what}", timeout_s)


async def _started_by(engine: Engine, job: str, marker_dir: str, role: Role,
                      worker_id: str) -> Run:
    """Wait until ``role`` is executing the first attempt (task body entered)."""
    await eventually(sync_check(lambda: ("start", role.pid) in marker_lines(marker_dir)),
                     f"{role.name} to start the task")
    return await _run_when(engine, job, f"running on {worker_id}",
                           lambda r: r.status is RunStatus.RUNNING and r.worker == worker_id)



async def _stop(role: Role) -> None:
    role.signal(signal.SIGTERM)
    assert await role.wait_exit() == 0, role.log()


async def test_worker_sigkilled_mid_run_is_reclaimed_and_completes_with_same_run_id(
        make_engine: Callable[..., Any], roles: Roles, marker_dir: str) -> None:
    engine = await make_engine()
    a = roles.spawn("worker", **FAST)
    a_id = await worker_ready(engine, a)
    job = await _fire_hang_first(engine, marker_dir, first_s=600)
    await _started_by(engine, job, marker_dir, a, a_id)
    b = roles.spawn("worker", **FAST)
    b_id = await worker_ready(engine, b)
    run = await engine.query.get_run(f"{job}:1")
    assert run is not None and (run.attempt, run.worker) == (1, a_id), \
        "a live worker's run is not taken while it keeps extending its lease"

    a.signal(signal.SIGKILL)
    assert await a.wait_exit() == -signal.SIGKILL

    run = await _run_when(engine, job, "succeeded", lambda r: r.status is RunStatus.SUCCEEDED)
    assert (run.id, run.attempt, run.worker) == (f"{job}:1", 2, b_id)
    assert marker_lines(marker_dir) == [("start", a.pid), ("start", b.pid), ("done", b.pid)]
    assert (await engine.query.get_job(job)).runs == 1  # type: ignore[union-attr]
    await _stop(b)
    await invariants.check(engine, QUEUES, [job], settled=True)


@pytest.mark.parametrize("resume", ["after_the_new_attempt_ended", "while_it_runs"])
@pytest.mark.parametrize("task", ["chaos.hang_first", "chaos.hang_first_sync"])
async def test_frozen_worker_gives_up_its_lost_run_and_records_nothing(
        make_engine: Callable[..., Any], roles: Roles, marker_dir: str, resume: str,
        task: str) -> None:
    """SIGSTOP past the lease: the run is reclaimed by another worker (attempt 2). After
    SIGCONT the frozen worker sees on its own clock that its lease lapsed and cancels its
    attempt 1 at once, so an async task never reaches its end a second time; a plain
    (sync) function cannot be cancelled, so it runs on to its end in its thread: the
    bound docs/guarantees.md states. Either way nothing is recorded for attempt 1 and
    the newer attempt's state stands, whether it already ended or still runs."""
    engine = await make_engine()
    during = resume == "while_it_runs"
    a = roles.spawn("worker", **FAST)
    a_id = await worker_ready(engine, a)
    job = await _fire_hang_first(engine, marker_dir, first_s=2.5,
                                 then_s=4 * LEASE_S if during else 0.0, task=task)
    await _started_by(engine, job, marker_dir, a, a_id)
    a.signal(signal.SIGSTOP)

    b = roles.spawn("worker", **FAST)
    b_id = await worker_ready(engine, b)
    if during:
        await _run_when(engine, job, "reclaimed by the other worker",
                        lambda r: (r.status, r.attempt, r.worker) == (RunStatus.RUNNING, 2, b_id))
    else:
        await _run_when(engine, job, "succeeded", lambda r: r.status is RunStatus.SUCCEEDED)

    a.signal(signal.SIGCONT)
    await eventually(sync_check(lambda: "lost: lease lapsed" in a.log()
                                or ("done", a.pid) in marker_lines(marker_dir)),
                     "the resumed worker to give up (or finish) its stale attempt")
    if during:
        now = await engine.query.get_run(f"{job}:1")
        assert now is not None
        assert (now.status, now.attempt, now.worker) == (RunStatus.RUNNING, 2, b_id), \
            "attempt 2 is still the one in charge"
    run = await _run_when(engine, job, "succeeded", lambda r: r.status is RunStatus.SUCCEEDED)
    assert (run.attempt, run.worker) == (2, b_id)
    await _stop(b)
    await asyncio.sleep(3.0)  # well past the end attempt 1 would have reached
    await _stop(a)
    lines = marker_lines(marker_dir)
    if task == "chaos.hang_first":
        assert sorted(lines) == sorted([("start", a.pid), ("start", b.pid), ("done", b.pid)]), \
            "run to its end exactly once, by attempt 2"
    else:
        assert sorted(lines) == sorted([("start", a.pid), ("start", b.pid), ("done", b.pid),
                                        ("done", a.pid)]), "a thread runs on to its end"
    assert "lost: lease lapsed" in a.log()
    assert "outcome(s) rejected" not in a.log(), "attempt 1 offered no outcome at all"
    after = await engine.query.get_run(f"{job}:1")
    assert after == run, "nothing changed after the one outcome"
    await invariants.check(engine, QUEUES, [job], settled=True)


async def test_sigterm_finishes_in_flight_run_within_grace_even_past_the_lease(
        make_engine: Callable[..., Any], roles: Roles, marker_dir: str) -> None:
    """Graceful stop: the in-flight run finishes on the stopping worker and it exits 0.
    The grace period outlasts the run lease, and another worker is reclaiming all the
    while: the stopping worker keeps its run's lease alive, so it is not run twice."""
    engine = await make_engine()
    a = roles.spawn("worker", worker__grace_s=10.0, **FAST)
    a_id = await worker_ready(engine, a)
    job = await _fire_hang_first(engine, marker_dir, first_s=3 * LEASE_S)
    await _started_by(engine, job, marker_dir, a, a_id)
    b = roles.spawn("worker", **FAST)  # started now, so it cannot be the one reading it
    await worker_ready(engine, b)

    a.signal(signal.SIGTERM)
    assert await a.wait_exit() == 0, a.log()
    run = await engine.query.get_run(f"{job}:1")
    assert run is not None
    assert (run.status, run.attempt, run.worker) == (RunStatus.SUCCEEDED, 1, a_id)
    assert marker_lines(marker_dir) == [("start", a.pid), ("done", a.pid)]
    await _stop(b)
    await invariants.check(engine, QUEUES, [job], settled=True)


@pytest.mark.parametrize("task", ["chaos.hang_first", "chaos.hang_first_sync"])
async def test_sigterm_leaves_run_longer_than_grace_pending_for_another_worker(
        make_engine: Callable[..., Any], roles: Roles, marker_dir: str, task: str) -> None:
    """Past the grace period the run is abandoned (left pending) and the worker exits 0;
    a sync task cannot be cancelled, so its thread is abandoned with it rather than
    holding the process open until the task returns."""
    engine = await make_engine()
    a = roles.spawn("worker", worker__grace_s=0.5, **FAST)
    a_id = await worker_ready(engine, a)
    job = await _fire_hang_first(engine, marker_dir, first_s=600, task=task)
    await _started_by(engine, job, marker_dir, a, a_id)

    a.signal(signal.SIGTERM)
    assert await a.wait_exit() == 0, a.log()
    run = await engine.query.get_run(f"{job}:1")
    assert run is not None and (run.status, run.attempt) == (RunStatus.RUNNING, 1), \
        "abandoned at shutdown: left as it was, for the reclaimer"
    await invariants.check(engine, QUEUES, [job], settled=False)

    b = roles.spawn("worker", **FAST)
    b_id = await worker_ready(engine, b)
    run = await _run_when(engine, job, "succeeded", lambda r: r.status is RunStatus.SUCCEEDED)
    assert (run.id, run.attempt, run.worker) == (f"{job}:1", 2, b_id)
    assert marker_lines(marker_dir) == [("start", a.pid), ("start", b.pid), ("done", b.pid)]
    await _stop(b)
    await invariants.check(engine, QUEUES, [job], settled=True)
