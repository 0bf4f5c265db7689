"""Tasks the chaos tests' worker subprocesses import (``--module tests.support.chaos_tasks``).

Owns: task bodies whose side effects land in a marker directory, so a test can see what
every process actually executed even after it was killed. Must not: touch Redis.

The marker log (``<dir>/log``) gets one line per event, written with a single O_APPEND
write so lines from several processes never interleave:
``start <pid>`` when a call begins and ``done <pid>`` when it returns.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from rsched.tasks import task


def _append(marker_dir: str, line: str) -> None:
    fd = os.open(Path(marker_dir) / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _first_call(marker_dir: str) -> bool:
    """True for exactly one call per marker directory, across processes."""
    try:
        os.close(os.open(Path(marker_dir) / "first", os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


def marker_lines(marker_dir: str | Path) -> list[tuple[str, int]]:
    """The marker log as (event, pid) pairs, in write order."""
    path = Path(marker_dir) / "log"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        event, _, pid = line.partition(" ")
        out.append((event, int(pid)))
    return out


@task(name="chaos.hang_first")
async def hang_first(marker_dir: str, first_s: float, then_s: float = 0.0) -> int:
    """The first call (per marker dir) sleeps ``first_s``, every later one ``then_s``;
    so a test can hold the first attempt inside a process while a reclaimed one finishes."""
    pid = os.getpid()
    first = _first_call(marker_dir)
    _append(marker_dir, f"start {pid}")
    await asyncio.sleep(first_s if first else then_s)
    _append(marker_dir, f"done {pid}")
    return pid


@task(name="chaos.noop")
async def noop() -> None:
    return None


@task(name="chaos.hang_first_sync")
def hang_first_sync(marker_dir: str, first_s: float, then_s: float = 0.0) -> int:
    """hang_first as a plain function: the worker runs it in its thread pool."""
    import time

    pid = os.getpid()
    first = _first_call(marker_dir)
    _append(marker_dir, f"start {pid}")
    time.sleep(first_s if first else then_s)
    _append(marker_dir, f"done {pid}")
    return pid
