"""Job operations and run outcomes, on fakeredis and on a real redis-server.

Time is a FakeClock; the scheduler and worker are ticked by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from rsched.clock import FakeClock
from rsched.errors import (
    DuplicateJob,
    Fatal,
    InvalidTransition,
    JobNotFound,
    Retry,
    ValidationError,
)
from rsched.models import (
    At,
    Cron,
    Every,
    Immediate,
    JobDef,
    JobState,
    Misfire,
    Overlap,
    RetryPolicy,
    RunStatus,
)
from rsched.tasks import TaskRegistry
from tests.support import system


class Harness:
    """A client, a scheduler and a worker on one engine, driven by one FakeClock."""

    def __init__(self, engine: Any, clock: FakeClock, reg: TaskRegistry) -> None:
        self.engine, self.clock = engine, clock
        self.client = system.client(engine, clock, reg)
        self.scheduler = system.scheduler(engine, clock)
        self.worker = system.worker(engine, clock, reg)

    async def step(self, advance_ms: int = 0) -> int:
        """Advance time, fire what is due, run it to completion; returns runs fired."""
        self.clock.advance(advance_ms)
        fired = (await self.scheduler.tick()).fired
        while (await self.worker.tick(block_ms=None)).started:
            pass
        await self.worker.drain()
        return fired


@pytest.fixture
def reg() -> TaskRegistry:
    r = TaskRegistry()
    r.calls = []  # type: ignore[attr-defined]

    @r.task(name="ok")
    async def ok(x: int = 0) -> int:
        r.calls.append(x)  # type: ignore[attr-defined]
        return x

    @r.task(name="flaky")
    def flaky(fail_times: int) -> str:
        r.calls.append("flaky")  # type: ignore[attr-defined]
        if r.calls.count("flaky") <= fail_times:  # type: ignore[attr-defined]
            raise RuntimeError(f"flake #{r.calls.count('flaky')}")  # type: ignore[attr-defined]
        return "finally"

    @r.task(name="fatal")
    async def fatal() -> None:
        raise Fatal("bad input, do not retry")

    @r.task(name="again")
    async def again() -> None:
        raise Retry(delay_s=30)

    @r.task(name="slow")
    async def slow() -> None:
        await asyncio.sleep(5)

    return r


@pytest.fixture
async def h(make_any_engine: Callable[..., Any], clock: FakeClock, reg: TaskRegistry) -> Harness:
    engine = await make_any_engine()
    harness = Harness(engine, clock, reg)
    await harness.worker.start()
    return harness


async def test_retry_then_success_keeps_run_id(h: Harness) -> None:
    job = await h.client.schedule(JobDef(task="flaky", kwargs={"fail_times": 2},
                                         retry=RetryPolicy(max_attempts=3, backoff_s=1,
                                                           jitter=0)))
    await h.step()
    [run] = await h.client.runs(job)
    assert (run.status, run.attempt) == (RunStatus.RETRYING, 2)
    assert (run.error or "").splitlines()[0] == "RuntimeError: flake #1"
    assert await h.step(999) == 0, "retry must wait for its backoff"
    assert await h.step(1) == 1
    [run] = await h.client.runs(job)
    assert (run.status, run.attempt) == (RunStatus.RETRYING, 3)
    await h.step(1999)
    assert await h.step(1) == 1
    [run] = await h.client.runs(job)
    assert (run.status, run.attempt, run.id) == (RunStatus.SUCCEEDED, 3, f"{job}:1")


async def test_retries_exhausted_go_to_dead_letter_with_last_error(h: Harness) -> None:
    job = await h.client.schedule(JobDef(task="flaky", kwargs={"fail_times": 99},
                                         retry=RetryPolicy(max_attempts=2, backoff_s=0.5,
                                                           jitter=0)))
    await h.step()
    await h.step(500)
    [run] = await h.client.runs(job)
    assert (run.status, run.attempt) == (RunStatus.DEAD, 2)
    [dead] = await h.client.dead_letters()
    assert (dead.run_id, dead.status, dead.attempt) == (run.id, RunStatus.DEAD, 2)
    assert dead.error.splitlines()[0] == "RuntimeError: flake #2"


async def test_fatal_error_fails_without_retry(h: Harness) -> None:
    job = await h.client.schedule(JobDef(task="fatal"))
    await h.step()
    [run] = await h.client.runs(job)
    assert (run.status, run.attempt) == (RunStatus.FAILED, 1)
    assert "bad input" in (run.error or "")
    assert [d.status for d in await h.client.dead_letters()] == [RunStatus.FAILED]


async def test_handler_requested_retry_uses_its_delay(h: Harness) -> None:
    job = await h.client.schedule(JobDef(task="again", retry=RetryPolicy(max_attempts=2)))
    await h.step()
    assert (await h.client.runs(job))[0].status is RunStatus.RETRYING
    assert await h.step(29_999) == 0
    assert await h.step(1) == 1


async def test_timeout_counts_as_failed_attempt(h: Harness) -> None:
    job = await h.client.schedule(JobDef(task="slow", timeout_s=0.05,
                                         retry=RetryPolicy(max_attempts=1)))
    await h.step()
    [run] = await h.client.runs(job)
    assert run.status is RunStatus.TIMED_OUT
    assert "timed out" in (run.error or "")


async def test_unknown_task_accepted_with_warning_then_dead_lettered(
        h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    # docs/decisions.md: the worker that knows a task may not have started yet.
    job = await h.client.schedule(JobDef(task="nope"))
    assert "task 'nope' is not registered by any worker yet" in caplog.text
    await h.step()
    [run] = await h.client.runs(job)
    assert run.status is RunStatus.FAILED
    assert "unknown task 'nope'" in (run.error or "")
    assert [d.run_id for d in await h.client.dead_letters()] == [run.id]


async def test_duplicate_id_rejected(h: Harness) -> None:
    await h.client.schedule(JobDef(id="same", task="ok"))
    with pytest.raises(DuplicateJob):
        await h.client.schedule(JobDef(id="same", task="ok"))


async def test_cancel_removes_future_slots(h: Harness) -> None:
    job = await h.client.schedule(JobDef(task="ok", schedule=Every(every_ms=1000)))
    assert await h.step() == 1
    await h.client.cancel(job)
    assert await h.step(5000) == 0
    assert (await h.client.get(job)).state is JobState.CANCELLED
    with pytest.raises(InvalidTransition):
        await h.client.cancel(job)


async def test_cancel_queued_run_is_never_executed(h: Harness, reg: TaskRegistry) -> None:
    job = await h.client.schedule(JobDef(task="ok", args=[1]))
    assert (await h.scheduler.tick()).fired == 1
    await h.client.cancel(job)
    await h.step()
    assert reg.calls == []  # type: ignore[attr-defined]
    assert [r.status for r in await h.client.runs(job)] == [RunStatus.CANCELLED]


async def test_cancel_running_run_stops_it(h: Harness) -> None:
    job = await h.client.schedule(JobDef(task="slow", timeout_s=60))
    await h.scheduler.tick()
    await h.worker.tick(block_ms=None)
    [(delivery, task)] = list(h.worker.inflight.values())
    await h.client.cancel(job)
    # the pub/sub signal reaches run()'s listener in production; deliver it directly here
    h.worker._cancelled.add(delivery.run_id)
    task.cancel()
    await h.worker.drain()
    [run] = await h.client.runs(job)
    assert run.status is RunStatus.CANCELLED


async def test_pause_and_resume(h: Harness) -> None:
    job = await h.client.schedule(JobDef(task="ok", schedule=Every(every_ms=1000)))
    assert await h.step() == 1
    await h.client.pause(job)
    assert (await h.client.get(job)).state is JobState.PAUSED
    assert await h.step(1000) == 0
    assert await h.step(1000) == 0
    with pytest.raises(InvalidTransition):
        await h.client.pause(job)
    await h.client.resume(job)
    assert await h.step() == 1, "the kept slot (now late, within grace) fires once"
    assert await h.step(1000) == 1
    with pytest.raises(InvalidTransition):
        await h.client.resume(job)


async def test_update_new_schedule_takes_effect(h: Harness) -> None:
    job = await h.client.schedule(JobDef(task="ok", schedule=Every(every_ms=60_000)))
    assert await h.step() == 1
    version = await h.client.update(job, JobDef(task="ok", schedule=Every(every_ms=1000)))
    assert version == 2
    assert await h.step() == 1
    assert await h.step(1000) == 1
    with pytest.raises(InvalidTransition):
        await h.client.update(job, JobDef(task="ok"), version=1)
    job_now = await h.client.get(job)
    assert job_now.trigger.schedule == Every(every_ms=1000)


async def test_update_unknown_job_is_not_found(h: Harness) -> None:
    with pytest.raises(JobNotFound):
        await h.client.update("ghost", JobDef(task="ok"))


async def test_run_now_adds_a_run_without_touching_schedule(h: Harness,
                                                            reg: TaskRegistry) -> None:
    job = await h.client.schedule(JobDef(task="ok", args=[3],
                                         schedule=At(at_ms=h.clock.ms + 3_600_000)))
    run_id = await h.client.run_now(job)
    await h.step()
    assert reg.calls == [3]  # type: ignore[attr-defined]
    assert (await h.client.run(run_id)).status is RunStatus.SUCCEEDED  # type: ignore[union-attr]
    assert (await h.client.get(job)).next_ms == h.clock.ms + 3_600_000


async def test_overlap_forbid_skips_slot_while_previous_run_active(h: Harness) -> None:
    job = await h.client.schedule(JobDef(task="slow", schedule=Every(every_ms=1000),
                                         overlap=Overlap.FORBID, timeout_s=60))
    assert (await h.scheduler.tick()).fired == 1
    h.clock.advance(1000)
    assert (await h.scheduler.tick()).fired == 0, "previous run still queued"
    assert (await h.client.get(job)).next_ms == h.clock.ms + 1000


async def test_misfire_fire_once_after_downtime(h: Harness) -> None:
    job = await h.client.schedule(JobDef(task="ok", schedule=Every(every_ms=1000), grace_s=2))
    assert await h.step() == 1
    assert await h.step(60_000) == 1, "60 missed slots fire once"
    assert (await h.client.get(job)).next_ms == h.clock.ms + 1000


async def test_misfire_skip_after_downtime(h: Harness) -> None:
    await h.client.schedule(JobDef(task="ok", schedule=Every(every_ms=1000), grace_s=2,
                                   misfire=Misfire.SKIP))
    assert await h.step() == 1
    assert await h.step(60_000) == 0
    assert await h.step(1000) == 1


async def test_misfire_catch_up_is_bounded(h: Harness) -> None:
    await h.client.schedule(JobDef(task="ok", schedule=Every(every_ms=1000), grace_s=2,
                                   misfire=Misfire.CATCH_UP, catch_up_max=5))
    assert await h.step() == 1
    fired = 0
    for _ in range(12):
        fired += await h.step(60_000 if _ == 0 else 0)
    assert fired == 5, "only the last catch_up_max missed slots run"


async def test_resume_after_40_s_pause_fires_one_run_not_40(h: Harness) -> None:
    job = await h.client.schedule(JobDef(task="ok", schedule=Every(every_ms=1000)))
    assert await h.step() == 1
    await h.client.pause(job)
    h.clock.advance(40_000)
    await h.client.resume(job)
    assert await system.fire_until_idle(h.scheduler) == 1, "40 due slots (within grace) coalesce"
    assert (await h.client.get(job)).next_ms == h.clock.ms + 1000


async def test_scheduler_down_28_s_fires_one_run_not_28(h: Harness) -> None:
    job = await h.client.schedule(JobDef(task="ok", schedule=Every(every_ms=1000)))
    assert await system.fire_until_idle(h.scheduler) == 1
    h.clock.advance(28_000)
    assert await system.fire_until_idle(h.scheduler) == 1
    assert len(await h.client.runs(job)) == 2


async def test_every_without_start_keeps_its_phase_after_downtime(h: Harness) -> None:
    h.clock.ms += 558  # created at .558 s past a second: every slot stays there
    job = await h.client.schedule(JobDef(task="ok", schedule=Every(every_ms=1000)))
    assert await system.fire_until_idle(h.scheduler) == 1
    h.clock.advance(90_053)  # beyond the 60 s grace
    await system.fire_until_idle(h.scheduler)
    assert (await h.client.get(job)).next_ms % 1000 == 558  # type: ignore[operator]


async def test_cron_with_seconds_fires_on_exact_seconds(h: Harness) -> None:
    h.clock.ms = 1_700_000_000_000  # 2023-11-14T22:13:20Z
    job = await h.client.schedule(JobDef(task="ok", schedule=Cron(expr="*/15 * * * * *")))
    assert (await h.client.get(job)).next_ms == 1_700_000_010_000
    slots = []
    for _ in range(4):
        h.clock.ms = (await h.client.get(job)).next_ms  # type: ignore[assignment]
        await h.step()
    slots = sorted(r.slot_ms for r in await h.client.runs(job))
    assert slots == [1_700_000_010_000, 1_700_000_025_000, 1_700_000_040_000,
                     1_700_000_055_000]


async def test_stale_completion_is_rejected_by_attempt_fence(h: Harness) -> None:
    job = await h.client.schedule(JobDef(task="ok"))
    await h.scheduler.tick()
    engine = h.engine
    [d] = await engine.runs.read_runs("w-old", ["default"], 10, None)
    assert await engine.runs.start_runs(h.clock.ms, "w-old", {d.shard: [d]}) == {d.shard: [0]}
    h.clock.advance(60_000)
    [taken] = await engine.runs.reclaim_runs(d.shard, "default", h.clock.ms, "w-new", 0, 10, 1000)
    assert (taken.run_id, taken.attempt) == (d.run_id, 2)
    from rsched.engine import Outcome

    codes = await engine.runs.complete_runs(h.clock.ms, 1000, {d.shard: [
        Outcome(d.run_id, 1, RunStatus.SUCCEEDED)]})
    assert codes == [-3]
    assert await engine.runs.fail_run(d.shard, h.clock.ms, 1000, d.run_id, 1, "late", None,
                                 RunStatus.FAILED) == -3
    codes = await engine.runs.complete_runs(h.clock.ms, 1000, {d.shard: [
        Outcome(d.run_id, 2, RunStatus.SUCCEEDED)]})
    assert codes == [0]
    [run] = await h.client.runs(job)
    assert (run.status, run.attempt, run.worker) == (RunStatus.SUCCEEDED, 2, "w-new")


async def test_reclaim_past_max_attempts_dead_letters(h: Harness) -> None:
    job = await h.client.schedule(JobDef(task="ok", retry=RetryPolicy(max_attempts=1)))
    await h.scheduler.tick()
    [d] = await h.engine.runs.read_runs("w-old", ["default"], 10, None)
    await h.engine.runs.start_runs(h.clock.ms, "w-old", {d.shard: [d]})
    assert await h.engine.runs.reclaim_runs(d.shard, "default", h.clock.ms, "w-new", 0, 10,
                                       1000) == []
    [run] = await h.client.runs(job)
    assert run.status is RunStatus.DEAD and "lease expired" in (run.error or "")
    assert [x.run_id for x in await h.client.dead_letters()] == [run.id]


async def test_immediate_job_done_after_firing(h: Harness) -> None:
    job = await h.client.schedule(JobDef(task="ok", schedule=Immediate()))
    await h.step()
    assert (await h.client.get(job)).state is JobState.DONE


@pytest.mark.parametrize(("job", "message"), [
    (JobDef(task="ok", schedule=Every(every_ms=-5)), "every_ms"),
    (JobDef(task="ok", retry=RetryPolicy(max_attempts=0)), "max_attempts"),
    (JobDef(task="ok", schedule=Cron(expr="0 * * * *", tz="Nowhere/City")), "unknown time zone"),
    (JobDef(task="ok", schedule=Cron(expr="every minute")), "cron"),
    (JobDef(task="ok", schedule=At(at_ms=1_000)), "in the past"),
    (JobDef(task="ok", queue="bad queue"), "invalid queue name"),
    (JobDef(task="ok", id="has:colon"), "invalid job id"),
])
async def test_bad_input_raises_one_typed_error(h: Harness, job: JobDef, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        await h.client.schedule(job)
    assert await h.client.list_jobs() == [], "nothing stored"


async def test_finished_and_cancelled_jobs_leave_the_listing_and_expire(h: Harness) -> None:
    done = await h.client.schedule(JobDef(task="ok"))
    cancelled = await h.client.schedule(JobDef(task="ok", schedule=Every(every_ms=1000)))
    active = await h.client.schedule(JobDef(task="ok", schedule=Every(every_ms=1000)))
    await h.step()
    await h.client.cancel(cancelled)
    assert await h.client.list_jobs() == [active]
    for job in (done, cancelled):
        ttl = await h.engine.core.redis.pttl(h.engine.keys_for(job).job(job))
        assert 0 < ttl <= h.engine.core.done_ttl_ms
    assert await h.engine.core.redis.pttl(h.engine.keys_for(active).job(active)) == -1


async def test_orphaned_due_entry_is_dropped_not_spun_on(h: Harness) -> None:
    k = h.engine.core.shard_keys[0]
    await h.engine.core.redis.zadd(k.due, {"ghost": h.clock.ms - 5})
    assert await h.step() == 0
    assert await h.engine.core.redis.zscore(k.due, "ghost") is None


async def test_corrupt_triggers_filling_a_batch_do_not_stall_the_tick(h: Harness) -> None:
    h.scheduler.cfg = __import__("msgspec").structs.replace(h.scheduler.cfg, batch=2)
    k = h.engine.core.shard_keys[0]
    for bad in ("bad1", "bad2"):
        await h.engine.core.redis.hset(k.job(bad), mapping={"state": "active", "sched": b"\xc1"})
        await h.engine.core.redis.zadd(k.due, {bad: h.clock.ms - 10})
    from rsched.engine.keys import shard_of

    good_id = next(f"good{i}" for i in range(100) if shard_of(f"good{i}", h.engine.shards) == 0)
    good = await h.client.schedule(JobDef(id=good_id, task="ok",
                                          schedule=At(at_ms=h.clock.ms - 5)))
    report = await asyncio.wait_for(h.scheduler.tick(), 5)
    assert report.fired == 1, "the good job behind a full batch of bad ones still fires"
    assert (await h.client.get(good)).runs == 1
    assert await h.engine.core.redis.zscore(k.due, "bad1") == h.clock.ms + 60_000, "parked"
