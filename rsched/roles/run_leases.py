"""A worker's own view of its runs' leases, on its monotonic clock.

Owns: each in-flight run's lease deadline as far as this worker can prove it, the fenced
extension of those leases (through the engine), and reporting the runs it lost, either
because an extension was refused or because its deadline passed (a freeze, a stalled
loop, Redis out of reach). Must not: cancel tasks or record outcomes (the worker does,
in its ``on_lost`` callback), or format keys.

Why a local deadline: the reclaimer takes an entry idle for ``lease_s`` on Redis's clock,
counted from the last delivery or extension Redis executed. A request is executed after
it was sent, so "sent at + lease_s" on this host's monotonic clock never ends later than
the lease Redis grants. Past it, another worker may already run the attempt after this
one, so the worker gives the run up without asking Redis (asking would take a round
trip during which the handler runs on). One timer, armed at the earliest deadline, fires
in the first loop iteration after a freeze, before a task woken by the same wake-up
takes its next step.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence

from rsched.engine.types import Delivery
from rsched.errors import Code

RunKey = tuple[str, int]  # (run id, attempt): one attempt of a run in this worker


def key(d: Delivery) -> RunKey:
    return d.run_id, d.attempt


class LeaseLapsed(Exception):  # noqa: N818 - a state, not a fault
    """Raised instead of starting a handler whose run's lease may have lapsed."""


class RunLeases:
    def __init__(self, lease_s: float, on_lost: Callable[[list[RunKey], str], None]) -> None:
        self.lease_s = lease_s
        self._until: dict[RunKey, float] = {}  # run -> monotonic deadline of its lease
        self._on_lost = on_lost
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def grant(self, runs: Iterable[Delivery], sent_at: float) -> None:
        """Runs handed to this worker by a request sent at ``sent_at`` (monotonic)."""
        until = sent_at + self.lease_s
        for d in runs:
            self._until[key(d)] = until
        self._arm(until)

    def valid(self, k: RunKey) -> bool:
        """Whether the lease surely still holds (safe to call from a pool thread)."""
        return time.monotonic() < self._until.get(k, -math.inf)

    def held(self, runs: Iterable[Delivery]) -> list[Delivery]:
        """The runs this worker still holds a lease on (the ones to extend)."""
        return [d for d in runs if key(d) in self._until]

    def drop(self, k: RunKey) -> None:
        self._until.pop(k, None)

    async def extend(self, extend_runs: Callable[[Sequence[Delivery]], Awaitable[list[int]]],
                     runs: Iterable[Delivery],
                     on_cancel: Callable[[list[str]], None] = lambda _: None) -> None:
        """Extend ``runs`` through ``extend_runs`` (Engine.extend_runs bound to this
        worker; fenced by attempt); report every refused one as lost, and the run ids of
        those whose cancel was asked (a missed cancel signal) to ``on_cancel``."""
        mine = self.held(runs)
        if not mine:
            return
        sent_at = time.monotonic()
        codes = await extend_runs(mine)
        until = sent_at + self.lease_s
        lost: list[RunKey] = []
        cancel: list[str] = []
        for d, code in zip(mine, codes, strict=True):
            k = key(d)
            if k not in self._until:
                continue  # ended, or lapsed while the reply was on its way
            if code in (Code.OK, Code.SIGNALLED):
                self._until[k] = max(self._until[k], until)
                if code == Code.SIGNALLED:
                    cancel.append(d.run_id)
            else:
                del self._until[k]
                lost.append(k)
        if lost:
            self._on_lost(lost, "lease extension refused: the run was reclaimed or ended")
        if cancel:
            on_cancel(cancel)

    def _arm(self, at: float) -> None:
        if at >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, at - time.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay, self._check)
        self._timer_at = at

    def _check(self) -> None:
        self._timer, self._timer_at = None, math.inf
        now = time.monotonic()
        lapsed = [k for k, until in self._until.items() if until <= now]
        for k in lapsed:
            del self._until[k]
        if self._until:
            self._arm(min(self._until.values()))
        if lapsed:
            self._on_lost(lapsed, "lease lapsed on this worker's clock (frozen or cut off "
                                  "from Redis past worker.lease_s)")

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, math.inf
