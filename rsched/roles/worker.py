"""The worker role: reads runs from queue streams, executes tasks, records outcomes.

Owns: concurrency, lease extension of in-flight runs (deadlines in run_leases.py),
cancellation signals, graceful shutdown (recording outcomes and retries is outcomes.py's);
reclaiming abandoned runs (reclaim_runs.lua) and trimming acked stream entries run as its
maintenance. Calling a task (arguments, timeout, threads) is task_call.py's.
Must not: fire slots or format keys. Every outcome and lease extension is fenced by the
run's attempt, so a worker that lost its run to a reclaim cannot overwrite the newer
attempt's result or take the run back; a run whose lease may have lapsed is cancelled
and records nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import msgspec

from rsched import codec, metrics
from rsched.clock import Clock, sleep_until
from rsched.engine import REDIS_DOWN, Delivery, Engine
from rsched.errors import Code, Fatal, Retry, SerializationError, describe
from rsched.models import JobSpec, RunStatus
from rsched.roles.held_runs import HeldRuns
from rsched.roles.kinds import TaskKinds
from rsched.roles.outcomes import Outcomes
from rsched.roles.periodic import Periodic
from rsched.roles.queue_gate import QueueGate
from rsched.roles.run_leases import LeaseLapsed, RunKey, RunLeases, key
from rsched.roles.task_call import TaskCaller
from rsched.settings import WorkerSettings
from rsched.tasks import TaskRegistry

log = logging.getLogger(__name__)
# Name prefix of the pool threads sync tasks run in (the runner looks for leftovers).
TASK_THREADS = "rsched-task"


@dataclass(frozen=True)
class WorkerReport:
    started: int
    inflight: int


class Worker:
    def __init__(self, engine: Engine, cfg: WorkerSettings, clock: Clock,
                 registry: TaskRegistry, worker_id: str | None = None) -> None:
        self.engine = engine
        self.cfg = cfg
        self.clock = clock
        self.registry = registry
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.inflight: dict[str, tuple[Delivery, asyncio.Task[None]]] = {}
        self._listening = asyncio.Event()  # set once subscribed to cancel signals
        self._room = asyncio.Event()  # set whenever an in-flight run ends
        # Task bodies running at once, at most: a read spread over every stream can take
        # a few more runs than there was room for (COUNT is per stream); those wait here.
        self._slots = asyncio.Semaphore(cfg.concurrency)
        self._stopping = asyncio.Event()
        self._cancelled: set[str] = set()
        self._leases = RunLeases(cfg.lease_s, self._lose)
        self._lost: set[RunKey] = set()  # runs cancelled because their lease may be gone
        self._pool = ThreadPoolExecutor(cfg.threads, thread_name_prefix=TASK_THREADS)
        self._caller = TaskCaller(registry, clock, self._pool, self._leases,
                                  self._lost.__contains__, TaskKinds(cfg))
        self._specs: dict[bytes, JobSpec] = {}
        self._ttl_ms = int(cfg.run_ttl_s * 1000)
        self._maintenance = Periodic()
        # free slots worth a read near full concurrency (see _wait_for_room)
        self._refill = max(1, min(cfg.batch, cfg.concurrency) // 4)
        metrics.IN_FLIGHT.add(self)
        self._gate = QueueGate(engine, self.id, cfg.queues, refresh_s=cfg.queue_config_s,
                               lease_s=cfg.lease_s, retry_s=cfg.limit_retry_s)
        self._outcomes = Outcomes(engine, clock, self._gate, self._ttl_ms)
        # runs fired ahead of their slot wait there, in flight, until it comes
        self._held = HeldRuns(clock, self.inflight, self._start_now, self._not_started,
                              self._room.set)

    async def start(self) -> None:
        await self.engine.runs.ensure_groups(self.cfg.queues)
        tasks = self.registry.names()
        await self.engine.runs.register_tasks(tasks)
        log.log(logging.INFO if tasks else logging.WARNING,
                "worker %s: queues %s, concurrency %d (%d threads for sync tasks), tasks %s",
                self.id, ",".join(self.cfg.queues), self.cfg.concurrency, self.cfg.threads,
                ", ".join(tasks) or "none (--module, RSCHED_WORKER__MODULES): Python tasks fail")

    # -- one iteration ------------------------------------------------------------------
    async def tick(self, block_ms: int | None = None, maintain: bool = True) -> WorkerReport:
        """Read one batch (blocking up to block_ms), start it; run due maintenance (the
        run loop does that in its own task instead: ``maintain=False``)."""
        if maintain:
            await self._maintain()
        room = self.cfg.concurrency - len(self.inflight)
        started = 0
        if room > 0 and not self._stopping.is_set():
            read_at = time.monotonic()  # their lease began after this
            # priority lanes and COUNT per stream: queue_gate.py
            runs = await self._gate.read(min(room, self.cfg.batch), block_ms)
            started = await self._start(runs, read_at)
        return WorkerReport(started, len(self.inflight))

    async def _start(self, runs: list[Delivery], read_at: float) -> int:
        if not runs:
            return 0
        self._leases.grant(runs, read_at)
        now = await self.clock.now_ms()
        # Runs fired ahead of their slot (the scheduler's lookahead) are started now, in
        # one start_runs with the rest, as of their slot, and their tasks wait for it
        # (_execute). A limited queue's runs must take their slot or token when due: held.
        held = {d.run_id for d in runs if d.not_before_ms > now and self._gate.limited(d.queue)}
        if held:
            self._held.hold([d for d in runs if d.run_id in held])
            runs = [d for d in runs if d.run_id not in held]
        return await self._start_now(runs, now)

    async def _start_now(self, runs: list[Delivery], now: int) -> int:
        if not runs:
            return 0
        admitted = await self._gate.admit(now, runs, self._leases.drop)  # queue-wide limits
        if admitted is not runs:  # a start is recorded after the slot it took was free
            runs, now = admitted, await self.clock.now_ms()
        by_shard: dict[int, list[Delivery]] = {}
        for d in runs:
            by_shard.setdefault(d.shard, []).append(d)
        started = 0
        codes_by_shard = await self.engine.runs.start_runs(
            now, self.id, by_shard, int(self.cfg.limit_retry_s * 1000))
        for shard, codes in codes_by_shard.items():
            for d, code in zip(by_shard[shard], codes, strict=True):
                if code == Code.OK:
                    self._spawn(d)
                    started += 1
                    continue
                self._leases.drop(key(d))
                await self._gate.release([key(d)])
                if code == Code.NOT_FOUND:
                    await self.engine.runs.ack_entry(d)
        return started

    def _not_started(self, d: Delivery) -> None:
        self._leases.drop(key(d))
        self._lost.discard(key(d))

    def _spawn(self, d: Delivery) -> None:
        task = asyncio.create_task(self._execute(d))
        self.inflight[d.run_id] = (d, task)

    async def drain(self) -> None:
        """Wait for every in-flight run and flush outcomes (tests call this after tick)."""
        while self.inflight:
            await asyncio.gather(*(t for _, t in list(self.inflight.values())),
                                 return_exceptions=True)
        await self.flush()

    # -- executing ----------------------------------------------------------------------
    def _spec(self, payload: bytes) -> JobSpec:
        spec = self._specs.get(payload)
        if spec is None:
            spec = codec.decode_spec(payload)
            if len(self._specs) > 10_000:
                self._specs.clear()
            self._specs[payload] = spec
        return spec

    async def _execute(self, d: Delivery) -> None:
        spec: JobSpec | None = None
        began = time.monotonic()
        try:
            if d.not_before_ms:  # fired ahead, started as of its slot: run at the slot
                await sleep_until(self.clock, d.not_before_ms)
            began = time.monotonic()
            spec = self._spec(d.payload)
            async with self._slots:
                result = await self._caller.call(spec, d)
            self._outcomes.record(d, RunStatus.SUCCEEDED, codec.encode_result(result))
        except LeaseLapsed:
            log.warning("run %s attempt %d not started: its lease may have lapsed since it "
                        "was read; left for the reclaimer", d.run_id, d.attempt)
        except asyncio.CancelledError:
            if key(d) in self._lost:
                log.warning("run %s attempt %d cancelled: its lease was lost; nothing "
                            "recorded", d.run_id, d.attempt)
            elif d.run_id in self._cancelled:
                self._outcomes.record(d, RunStatus.CANCELLED, "")
            else:
                # shutdown past grace: leave the entry pending for the reclaimer
                log.warning("run %s abandoned at shutdown; it will be reclaimed", d.run_id)
        except TimeoutError:
            timeout = spec.timeout_s if spec else "?"
            await self._outcomes.fail(d, spec, f"timed out after {timeout}s",
                                      RunStatus.TIMED_OUT, retry=True)
        except Retry as exc:
            delay = None if exc.delay_s is None else int(exc.delay_s * 1000)
            await self._outcomes.fail(d, spec, exc.reason or "retry requested",
                                      RunStatus.DEAD, retry=True, delay_ms=delay)
        except Fatal as exc:  # the handler's own reason; its traceback says nothing more
            await self._outcomes.fail(d, spec, f"Fatal: {exc}", RunStatus.FAILED, retry=False)
        except (SerializationError, LookupError) as exc:
            await self._outcomes.fail(d, spec, describe(exc), RunStatus.FAILED, retry=False)
        except Exception as exc:  # noqa: BLE001 - any handler error is a failed attempt
            await self._outcomes.fail(d, spec, describe(exc), RunStatus.DEAD, retry=True)
        finally:
            metrics.RUN_DURATION.observe(time.monotonic() - began)
            if self.inflight.get(d.run_id, (None,))[0] is d:  # not a later attempt's
                del self.inflight[d.run_id]
            self._leases.drop(key(d))
            self._lost.discard(key(d))
            self._cancelled.discard(d.run_id)
            self._room.set()

    def _lose(self, keys: list[RunKey], why: str) -> None:
        """Runs whose lease this worker may no longer hold: another worker may be running
        them now, so cancel their handlers at once; their outcome is never recorded."""
        for run_id, attempt in keys:
            entry = self.inflight.get(run_id)
            if entry is None or entry[0].attempt != attempt or entry[1].done():
                continue
            log.warning("run %s attempt %d lost: %s", run_id, attempt, why)
            self._lost.add((run_id, attempt))
            entry[1].cancel()

    async def flush(self) -> None:
        """Record buffered outcomes now (tests and shutdown; the flusher does it live)."""
        await self._outcomes.flush()

    # -- maintenance --------------------------------------------------------------------
    async def _maintainer(self) -> None:
        """Maintenance off the read loop: heartbeats, lease extension, reclaims and trims
        take several round trips each (16 shards), and behind a busy Redis they stalled
        reading for up to a second (docs/benchmarks.md: the burst tail)."""
        backoff = 0.05
        while not self._stopping.is_set():  # shutdown extends in-flight leases itself
            try:
                await self._maintain()
                backoff = 0.05
            except REDIS_DOWN as exc:
                log.warning("maintenance: redis unavailable (%s); retrying in %.2fs", exc,
                            backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            await asyncio.sleep(min(self._maintenance.next_in_s(), self.cfg.lease_s / 6))

    async def _maintain(self) -> None:
        every = self._maintenance.due
        if every("heartbeat", self.cfg.heartbeat_s):
            await self.engine.runs.heartbeat(self.id, await self.clock.now_ms())
        if every("extend", self.cfg.lease_s / 3) and self.inflight:
            await self._extend()
        if every("reclaim", self.cfg.reclaim_every_s):
            await self.reclaim()
        if every("trim", self.cfg.trim_every_s):
            await self.engine.runs.trim_queues(self._gate.lanes)

    async def reclaim(self) -> int:
        """Take over runs whose worker stopped extending them (died or froze)."""
        # Our own runs are not abandoned, however long this loop was paused (Redis
        # unreachable, a stall): record finished ones and refresh running ones first, or
        # XAUTOCLAIM would hand them back to us as new attempts and run them twice.
        await self.flush()
        await self._extend()
        now = await self.clock.now_ms()
        taken = 0
        for queue in self._gate.lanes:
            for shard in range(self.engine.shards):
                room = self.cfg.concurrency - len(self.inflight)
                if room <= 0 or self._stopping.is_set():
                    return taken
                sent_at = time.monotonic()
                runs = await self.engine.runs.reclaim_runs(shard, queue, now, self.id,
                                                      int(self.cfg.lease_s * 1000), room,
                                                      self._ttl_ms)
                self._leases.grant(runs, sent_at)
                await self._gate.hand_over(now, runs)
                for d in runs:
                    log.info("reclaimed run %s (attempt %d)", d.run_id, d.attempt)
                    self._spawn(d)
                taken += len(runs)
        return taken

    async def _extend(self) -> None:
        """Extend the leases of in-flight runs (fenced by attempt); lost ones are cancelled."""
        # held runs are not started yet (still queued): their read lease outlasts the hold
        started = [d for d, _ in self.inflight.values() if d.run_id not in self._held]
        await self._leases.extend(functools.partial(self.engine.runs.extend_runs, self.id),
                                  started, self._cancel)
        await self._gate.renew(self.clock, [key(d) for d in started] + [
            *self._outcomes.pending()])

    # -- loop ---------------------------------------------------------------------------
    async def run(self) -> None:
        await self.start()
        helpers = [asyncio.create_task(self._outcomes.flusher()),
                   asyncio.create_task(self._listen()), asyncio.create_task(self._maintainer())]
        with contextlib.suppress(TimeoutError):  # hear cancels of the runs read from now on
            async with asyncio.timeout(2.0):
                await self._listening.wait()
        block_ms = int(self.cfg.block_s * 1000)
        backoff = 0.05
        try:
            while not self._stopping.is_set():
                try:
                    report = await self.tick(block_ms, maintain=False)
                    backoff = 0.05
                except REDIS_DOWN as exc:
                    log.warning("redis unavailable (%s); retrying in %.2fs", exc, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                if self.cfg.concurrency - report.inflight < self._refill:
                    await self._wait_for_room()
        finally:
            await self._shutdown(helpers)

    async def _wait_for_room(self) -> None:
        """Near full concurrency, wait until ``_refill`` slots are free (instead of
        polling, and instead of reading 1-2 runs per free slot: a read of a few runs spread
        over every shard costs a script call per run to start and one to complete), but
        at most 0.1 s at a time, so long runs holding most slots cannot starve a few
        free ones."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 0.1
        while self.cfg.concurrency - len(self.inflight) < self._refill:
            self._room.clear()
            left = deadline - loop.time()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._room.wait()

    async def _listen(self) -> None:
        async for run_id in self.engine.runs.cancel_signals(self._listening):
            self._cancel([run_id])

    def _cancel(self, run_ids: list[str]) -> None:
        """Stop these runs' handlers; their outcome is recorded as cancelled."""
        for run_id in run_ids:
            entry = self.inflight.get(run_id)
            # a held run is still queued: cancel_run ended it, start_runs will refuse it
            if entry is not None and not entry[1].done() and run_id not in self._held:
                self._cancelled.add(run_id)
                entry[1].cancel()

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop reading; in-flight runs get ``grace_s`` to finish (see run())."""
        if grace_s is not None:
            self.cfg = _with_grace(self.cfg, grace_s)
        self._stopping.set()

    async def _shutdown(self, helpers: list[asyncio.Task[None]]) -> None:
        tasks = [t for _, t in self.inflight.values()]
        if tasks:
            log.info("waiting up to %.1fs for %d in-flight run(s)", self.cfg.grace_s, len(tasks))
            late = await self._wait_extending(tasks)
            for t in late:
                t.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        # Stop the flusher before the final flush: cancelled mid-flush it puts its batch
        # back, so the final flush records every outcome (before, a flush in flight when
        # the helpers were cancelled could be lost, leaving a finished run to be re-run).
        for h in helpers:
            h.cancel()
        # bounded: a cancel swallowed deep in a client library must not hang the exit
        _, stuck = await asyncio.wait(helpers, timeout=5.0)
        if stuck:
            log.warning("%d worker helper task(s) did not stop; exiting anyway", len(stuck))
        try:
            await self.flush()
            await self.engine.runs.forget_worker(self.id)
        except REDIS_DOWN as exc:
            log.warning("shutdown without final flush (%s); runs will be reclaimed", exc)
        self._leases.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        await self._caller.kinds.aclose()

    async def _wait_extending(self, tasks: list[asyncio.Task[None]]) -> set[asyncio.Task[None]]:
        """Wait up to grace_s for in-flight runs, extending their leases meanwhile: the run
        loop no longer does, and a grace period outlasting the lease would otherwise let
        another worker reclaim (and run a second time) a run that is about to finish."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.grace_s
        pending = set(tasks)
        while pending and (left := deadline - loop.time()) > 0:
            await asyncio.wait(pending, timeout=min(left, self.cfg.lease_s / 3))
            # runs held for their slot start meanwhile: wait for those too
            pending = {t for _, t in self.inflight.values() if not t.done()}
            if pending and self.inflight:
                try:
                    await self._extend()
                except REDIS_DOWN as exc:
                    log.warning("cannot extend in-flight runs during shutdown (%s)", exc)
        return pending


def _with_grace(cfg: WorkerSettings, grace_s: float) -> WorkerSettings:
    return msgspec.structs.replace(cfg, grace_s=grace_s)
