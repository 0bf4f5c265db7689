"""The task registry workers execute from, and the ``@task`` decorator.

Owns: name -> callable mapping, importing task modules. Must not: run tasks.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from rsched.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Task:
    name: str
    fn: Callable[..., Any]
    is_async: bool


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
            self._tasks[key] = Task(key, f, inspect.iscoroutinefunction(f))
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
