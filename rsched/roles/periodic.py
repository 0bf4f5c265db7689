"""Named steps that are each due every so often (a role's maintenance).

Owns: when each step ran last, on the monotonic clock. Must not: run the steps.
"""

from __future__ import annotations

import time


class Periodic:
    def __init__(self) -> None:
        self._due: dict[str, float] = {}  # step name -> next monotonic time

    def due(self, name: str, period_s: float) -> bool:
        """Whether ``name`` is due now (a first ask always is); if so, it is next due
        ``period_s`` from now."""
        t = time.monotonic()
        if t >= self._due.get(name, 0.0):
            self._due[name] = t + period_s
            return True
        return False

    def next_in_s(self) -> float:
        """Seconds until the earliest step is due."""
        return max(0.0, min(self._due.values(), default=0.0) - time.monotonic())
