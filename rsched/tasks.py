"""The task registry workers execute from, the ``@task`` decorator and ``RunContext``.

Owns: name -> callable mapping, importing task modules, which parameter (if any) takes
the run context. Must not: run tasks.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import threading
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from rsched.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True, kw_only=True)
class RunContext:
    """What a running task knows about its run. A task gets one by declaring a parameter
    annotated ``RunContext`` (any name); the worker passes it by keyword::

        @task
        async def send(to: str, ctx: RunContext) -> None:
            await mailer.send(to, idempotency_key=ctx.run_id)

    Make side effects idempotent on ``run_id``: a retried or reclaimed run keeps its id and
    gets a higher ``attempt``. What a task returns is recorded as the run's ``result``
    (JSON, capped at 64 KiB)."""

    job_id: str
    run_id: str  # "<job id>:<run number>", the same for every attempt of the run
    attempt: int  # 1 for the first execution; retries and reclaims add one
    slot_ms: int  # the scheduled slot this run is for (epoch ms)
    queue: str
    deadline_ms: int | None  # epoch ms (Redis clock) its timeout ends; None: no timeout
    tenant: str = "default"
    # set when the run is cancelled, times out, loses its lease or is abandoned at shutdown
    stop: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    def cancelled(self) -> bool:
        """Whether the run must stop. An async handler is cancelled where it awaits; a
        plain function runs on in its thread, so a long one should check this between
        steps and return (what it returns then is not recorded)."""
        return self.stop.is_set()


@dataclass(frozen=True)
class Task:
    name: str
    fn: Callable[..., Any]
    is_async: bool
    context_arg: str | None = None  # the parameter that takes a RunContext


def context_arg(fn: Callable[..., Any]) -> str | None:
    """The name of ``fn``'s parameter annotated ``RunContext``, if it has one."""
    params = inspect.signature(fn).parameters
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: compare their text
        hints = {n: p.annotation for n, p in params.items()}
    for name in params:
        hint = hints.get(name)
        if hint is RunContext or (isinstance(hint, str)
                                  and hint.strip("'\" ").rpartition(".")[2] == "RunContext"):
            return name
    return None


class TaskRegistry:
    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

    @overload
    def task(self, fn: F) -> F: ...
    @overload
    def task(self, *, name: str | None = None) -> Callable[[F], F]: ...

    def task(self, fn: Any = None, *, name: str | None = None) -> Any:
        """Register a callable (sync or async) under ``name`` (default: module.qualname)."""

        def register(f: F) -> F:
            key = name or f"{f.__module__}.{f.__qualname__}"
            existing = self._tasks.get(key)
            if existing is not None and existing.fn is not f:
                raise ConfigError(f"task {key!r} is registered twice")
            self._tasks[key] = Task(key, f, inspect.iscoroutinefunction(f), context_arg(f))
            return f

        return register(fn) if fn is not None else register

    def get(self, name: str) -> Task | None:
        return self._tasks.get(name)

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def import_modules(self, modules: Iterable[str]) -> None:
        """Import task modules; the current directory is searched too (as `python -m`
        does), so `rsched worker --module tasks` finds ./tasks.py without PYTHONPATH."""
        cwd = os.getcwd()
        if cwd not in sys.path and "" not in sys.path:
            sys.path.append(cwd)
        for mod in modules:
            try:
                importlib.import_module(mod)
            except ImportError as exc:
                raise ConfigError(f"cannot import task module {mod!r}: {exc}") from exc


registry = TaskRegistry()
task = registry.task
