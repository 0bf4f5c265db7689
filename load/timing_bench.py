"""Next-fire cost around DST transitions: microseconds per ``next_fire`` call.

For each zone and cron, walks consecutive fires through a window around every offset
change of the chosen years (where the walk has to cross or re-enter a local hour), and
reports the worst and mean cost of one call, in CPU time of the calling thread (wall time
on a shared host mostly measures preemption). One-time costs are reported apart, as
``cold``: the first call for a cron expression parses it (cached per expression and zone),
the first call in a zone and year finds that year's offset changes (cached too).
The walks run with the garbage collector off (``--gc`` keeps it on): a collection lands in
whichever call allocates when it is due (0.6-0.8 ms for a generation-1 collection here),
a cost of the process, not of the call. ``shared`` asks each fire again at once: what
every further job on the same cron and zone pays for a slot already computed (the
next-fire memo, timing.NEXT_MEMO_SIZE entries).

    python -m load.timing_bench --years 2025 2026 --window-h 3
"""

from __future__ import annotations

import argparse
import gc
import time
from zoneinfo import ZoneInfo

from rsched import crontime
from rsched.crontime import year_transitions as _year_transitions
from rsched.models import Cron
from rsched.timing import _cron_next_memo, next_fire

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago",
         "Pacific/Chatham", "Antarctica/Troll"]
EXPRS = ["*/10 * * * * *", "* * * * *", "*/15 * * * *", "0 * * * *", "30 2 * * *",
         "0 0,30 2 * * *"]


def cold_us(zone: str, year: int) -> tuple[float, float]:
    """CPU µs of a first call in a zone and year, and of a first call of a new cron."""
    start = _transitions(zone, year)[0] - 3_600_000
    _year_transitions.cache_clear()
    crontime._table.cache_clear()
    crontime._TABLES.clear()
    _cron_next_memo.cache_clear()
    t0 = time.thread_time_ns()
    next_fire(Cron(expr="0 * * * *", tz=zone), start)
    t1 = time.thread_time_ns()
    next_fire(Cron(expr=f"{year % 60} 1 * * *", tz=zone), start)
    return (t1 - t0) / 1000, (time.thread_time_ns() - t1) / 1000


def _transitions(zone: str, year: int) -> list[int]:
    return [t for t, _, _ in _year_transitions(ZoneInfo(zone), year)]


def walk(sched: Cron, start_ms: int, end_ms: int) -> tuple[list[float], list[float]]:
    """Per-call cost (µs) of following the fires from start_ms to end_ms, and of asking
    each again at once (a further job on the same cron and slot: the memo)."""
    costs: list[float] = []
    again: list[float] = []
    at: int | None = start_ms
    while at is not None and at < end_ms:
        t0 = time.thread_time_ns()
        nxt = next_fire(sched, at)
        t1 = time.thread_time_ns()
        next_fire(sched, at)
        again.append((time.thread_time_ns() - t1) / 1000)
        costs.append((t1 - t0) / 1000)
        at = nxt
    return costs, again


def noise_floor_us(calls: int) -> float:
    """The worst CPU time measured around a trivial call, over as many calls: what a
    shared VM adds to any single measurement (interrupts, cache misses)."""
    worst = 0
    for i in range(calls):
        t0 = time.thread_time_ns()
        abs(i)
        worst = max(worst, time.thread_time_ns() - t0)
    return worst / 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--years", type=int, nargs="+", default=[2026])
    ap.add_argument("--window-h", type=float, default=3.0, help="hours each side of a change")
    ap.add_argument("--gc", action="store_true", help="keep the garbage collector on")
    args = ap.parse_args()
    if not args.gc:
        gc.disable()
    window = int(args.window_h * 3_600_000)
    print(f"{'zone':22} {'cron':16} {'calls':>7} {'worst µs':>9} {'mean µs':>8}  (CPU)")
    every: list[float] = []
    shared: list[float] = []
    for zone in ZONES:
        for expr in EXPRS:
            sched = Cron(expr=expr, tz=zone)
            next_fire(sched, 0)  # parse once, as the scheduler does
            costs: list[float] = []
            for y in args.years:
                for t in _transitions(zone, y):
                    first, again = walk(sched, t - window, t + window)
                    costs += first
                    shared += again
            every += costs
            print(f"{zone:22} {expr:16} {len(costs):7} {max(costs):9.0f} "
                  f"{sum(costs) / len(costs):8.1f}")
    every.sort()
    print(f"all: {len(every)} calls, worst {every[-1]:.0f} µs, "
          f"p99.9 {every[int(len(every) * 0.999)]:.0f} µs, mean {sum(every) / len(every):.1f} µs"
          f" (noise floor: worst of as many trivial calls {noise_floor_us(len(every)):.0f} µs)")
    print(f"shared (each asked again at once): worst {max(shared):.0f} µs, "
          f"mean {sum(shared) / len(shared):.2f} µs")
    colds = [cold_us(zone, y) for zone in ZONES for y in args.years]
    for i, what in enumerate(("first call in a zone and year", "first call of a new cron")):
        got = [c[i] for c in colds]
        print(f"cold, {what}: worst {max(got):.0f} µs, mean {sum(got) / len(got):.0f} µs")


if __name__ == "__main__":
    main()
