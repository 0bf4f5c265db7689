"""The task the engine benchmark runs: a no-op that reports when it started.

Owns: ``bench.noop``. Must not: do any work; its cost is the engine's.
"""

from __future__ import annotations

import time

from rsched.tasks import task


@task(name="bench.noop")
async def noop() -> int:
    # Host wall clock in microseconds, stored as the run's result: the benchmark subtracts
    # the slot (Redis TIME ms; same machine, same clock) to get the start lag seen by the
    # task itself, after every engine step before it.
    return time.time_ns() // 1000  # recorded as JSON: the digits
