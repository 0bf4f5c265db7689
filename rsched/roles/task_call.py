"""Calling one run's task function, for the worker.

Owns: the call's arguments (with the RunContext a task asks for, whose cancelled() turns
true when the call ends early), the per-run timeout, running plain functions in the
worker's thread pool, handing HTTP and shell tasks to roles/kinds/, and the last lease
check right before a handler starts. Must not: record outcomes, talk to Redis or pick
runs.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rsched.clock import Clock
from rsched.engine.types import Delivery
from rsched.errors import Fatal
from rsched.models import JobSpec
from rsched.roles.kinds import TaskKinds, has_kind
from rsched.roles.run_leases import LeaseLapsed, RunKey, RunLeases, key
from rsched.tasks import RunContext, Task, TaskRegistry


class TaskCaller:
    def __init__(self, registry: TaskRegistry, clock: Clock, pool: ThreadPoolExecutor,
                 leases: RunLeases, is_lost: Callable[[RunKey], bool], kinds: TaskKinds
                 ) -> None:
        self.registry = registry
        self.clock = clock
        self.kinds = kinds
        self._pool = pool
        self._leases = leases
        self._is_lost = is_lost

    async def call(self, spec: JobSpec, d: Delivery) -> Any:
        """The task's result; raises what it raises, TimeoutError past ``timeout_s``, and
        LeaseLapsed instead of starting it once its lease may have lapsed (a freeze or a
        stall since the run was read): another worker may be running it by then."""
        stop: threading.Event | None = None
        coro: Awaitable[Any]
        if has_kind(spec):
            if not self._leases.valid(key(d)):
                raise LeaseLapsed
            coro = self.kinds.run(spec)
        else:
            coro, stop = await self._python(spec, d)
        try:
            if spec.timeout_s is None:
                return await coro
            return await self._with_timeout(coro, spec.timeout_s, key(d))
        except BaseException:
            if stop is not None:  # ctx.cancelled() is now true (a thread may run on)
                stop.set()
            raise

    async def _python(self, spec: JobSpec, d: Delivery
                      ) -> tuple[Awaitable[Any], threading.Event | None]:
        task = self.registry.get(spec.task)
        if task is None:
            raise Fatal(f"unknown task {spec.task!r} (not registered in this worker)")
        kwargs = spec.kwargs
        stop = None
        if task.context_arg is not None:
            ctx = await self._context(spec, d)
            kwargs, stop = {**kwargs, task.context_arg: ctx}, ctx.stop
        if task.is_async:
            if not self._leases.valid(key(d)):
                raise LeaseLapsed
            return task.fn(*spec.args, **kwargs), stop
        return asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(
            self._run_sync, key(d), task, spec.args, kwargs)), stop

    async def _with_timeout(self, coro: Any, timeout_s: float, k: RunKey) -> Any:
        # One timer handle per run (asyncio.timeout costs several times more per run, and
        # wait_for a task): on expiry the run's task is cancelled and this raises
        # TimeoutError, as asyncio.timeout would. A run cancelled because its lease was
        # lost stays cancelled (nothing may be recorded for it).
        current = asyncio.current_task()
        assert current is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            if not current.done() and not self._is_lost(k):
                expired = True
                current.cancel()

        timer = asyncio.get_running_loop().call_later(timeout_s, expire)
        try:
            return await coro
        except asyncio.CancelledError:
            if not expired or self._is_lost(k):
                raise
            current.uncancel()
            raise TimeoutError from None
        finally:
            timer.cancel()

    def _run_sync(self, k: RunKey, task: Task, args: list[Any], kwargs: dict[str, Any]
                  ) -> Any:
        """In a pool thread, which may start late (a busy pool, a freeze)."""
        if not self._leases.valid(k):
            raise LeaseLapsed
        return task.fn(*args, **kwargs)

    async def _context(self, spec: JobSpec, d: Delivery) -> RunContext:
        deadline = None
        if spec.timeout_s is not None:
            deadline = await self.clock.now_ms() + int(spec.timeout_s * 1000)
        return RunContext(job_id=d.job_id, run_id=d.run_id, attempt=d.attempt,
                          slot_ms=d.slot_ms, queue=d.queue, deadline_ms=deadline,
                          tenant=spec.tenant)
