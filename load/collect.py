"""What happened to every run of a benchmark, read back from the shards' events streams.

Owns: parsing run events (queued / running / succeeded, skips), counting runs per
(job, slot), lags and percentiles. Must not: start processes or schedule jobs.

The events streams are the engine's own record of every transition (fire_due, start_runs,
complete_runs write them in the same atomic step as the transition), so counting them
counts what the engine did, not what a client believes it did.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rsched.engine.keys import ShardKeys


@dataclass
class RunFacts:
    job: str
    slot_ms: int
    enq_ms: int = 0  # when fire_due enqueued it (ms part of the event's stream id)
    start_ms: int = 0  # when start_runs marked it running (first time; event id)
    recorded_start_ms: int = 0  # the worker's `start` time written in the run hash
    end_ms: int = 0  # when complete_runs recorded the outcome (event id)
    task_us: int = 0  # when the task body ran (host clock, reported by bench.noop)
    starts: int = 0
    successes: int = 0


@dataclass
class Facts:
    runs: dict[str, RunFacts] = field(default_factory=dict)
    by_slot: dict[tuple[str, int], list[str]] = field(default_factory=dict)
    skips: int = 0
    events: int = 0

    def add(self, eid: bytes, f: dict[bytes, bytes]) -> None:
        # An event's stream id is the Redis clock at the moment of the transition (XADD
        # with '*'); the time fields inside are the script's now_ms argument, read once
        # per scheduler tick or worker batch, so they understate lag under load.
        at_ms = int(eid.split(b"-", 1)[0])
        self.events += 1
        kind = f.get(b"k")
        if kind == b"skip":
            self.skips += int(f.get(b"n", b"1"))
            return
        if kind != b"run":
            return
        st, run_id = f[b"st"], f[b"r"].decode()
        if st == b"queued":
            run = self.runs.get(run_id)
            if run is None:  # a retry re-queues the same run id: one run, not two
                slot = int(float(f[b"slot"]))
                run = self.runs[run_id] = RunFacts(f[b"j"].decode(), slot, at_ms)
                self.by_slot.setdefault((run.job, slot), []).append(run_id)
        elif st == b"running":
            run = self.runs[run_id]
            run.starts += 1
            if not run.start_ms:
                run.start_ms, run.recorded_start_ms = at_ms, int(f[b"start"])
        elif st == b"succeeded":
            run = self.runs[run_id]
            run.successes += 1
            run.end_ms = at_ms
            res = f.get(b"res", b"").strip(b'"')  # a JSON number, or a string of one
            run.task_us = int(res) if res.isdigit() else 0


def from_slot(facts: Facts, first_ms: int) -> tuple[Facts, int]:
    """Only the runs of slots at or after first_ms, and how many runs were left out (cron
    jobs have no start: they fire from creation on, before the measured window)."""
    keep = Facts(skips=facts.skips, events=facts.events)
    for key, ids in facts.by_slot.items():
        if key[1] >= first_ms:
            keep.by_slot[key] = ids
            keep.runs.update((r, facts.runs[r]) for r in ids)
    return keep, len(facts.runs) - len(keep.runs)


async def read_events(redis: Any, keys: Iterable[ShardKeys], since_id: str,
                      chunk: int = 20_000) -> Facts:
    """Every event from ``since_id`` on, streamed chunk by chunk (bounded memory)."""
    facts = Facts()
    for k in keys:
        start = since_id
        while True:
            entries = await redis.xrange(k.events, min=start, count=chunk)
            for eid, fields in entries:
                facts.add(eid, fields)
            if len(entries) < chunk:
                break
            start = "(" + entries[-1][0].decode()
    return facts


def percentiles(values: list[float]) -> dict[str, float]:
    """Nearest-rank p50/p90/p99 and max, in the unit given; empty -> zeros."""
    if not values:
        return {"n": 0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    s = sorted(values)

    def rank(p: float) -> float:
        return float(s[max(0, math.ceil(p * len(s)) - 1)])

    return {"n": len(s), "p50": rank(0.50), "p90": rank(0.90), "p99": rank(0.99),
            "max": float(s[-1])}


def judge(facts: Facts, expected: dict[tuple[str, int], int] | set[tuple[str, int]]
          ) -> dict[str, int]:
    """Lost and duplicated counts against the slots that should have fired exactly once."""
    fired = set(facts.by_slot)
    want = set(expected)
    done = {key for key, ids in facts.by_slot.items()
            if any(facts.runs[r].successes for r in ids)}
    return {
        "expected": len(want),
        "fired": len(fired & want),
        "completed": len(done & want),
        "lost": len(want - done),  # never fired, or fired and never completed
        "missed_slots": len(want - fired),  # never fired
        "duplicated": sum(len(ids) - 1 for ids in facts.by_slot.values()),  # >1 run a slot
        "unexpected": len(fired - want),  # fired a slot that was not scheduled
        "executed_twice": sum(1 for r in facts.runs.values() if r.starts > 1),
        "succeeded_twice": sum(1 for r in facts.runs.values() if r.successes > 1),
        "skipped": facts.skips,
    }


def lags(facts: Facts) -> dict[str, dict[str, float]]:
    """Fire lag (slot -> enqueued), start lag (slot -> task body ran, seen by the task),
    marked-running lag (slot -> start_runs), the run hash's `start` field and end lag
    (slot -> outcome recorded), in ms."""
    runs = [r for r in facts.runs.values() if r.successes]
    return {
        "fire_lag_ms": percentiles([r.enq_ms - r.slot_ms for r in runs]),
        "start_lag_ms": percentiles([r.task_us / 1000 - r.slot_ms for r in runs if r.task_us]),
        "marked_running_lag_ms": percentiles([r.start_ms - r.slot_ms for r in runs]),
        "recorded_start_lag_ms": percentiles([r.recorded_start_ms - r.slot_ms for r in runs]),
        "end_lag_ms": percentiles([r.end_ms - r.slot_ms for r in runs]),
        # enqueued -> task body ran: the worker's part of the start lag
        "queue_wait_ms": percentiles([r.task_us / 1000 - r.enq_ms for r in runs if r.task_us]),
    }


def start_gaps(facts: Facts, top: int = 5) -> list[dict[str, float]]:
    """The ``top`` longest pauses between consecutive task starts while runs were waiting
    (enqueued, not started): a whole-second wait (a blocking read, a timer) shows here."""
    runs = sorted((r for r in facts.runs.values() if r.task_us), key=lambda r: r.task_us)
    if not runs:
        return []
    t0 = runs[0].task_us
    gaps = []
    for prev, cur in zip(runs, runs[1:], strict=False):
        waiting = cur.enq_ms * 1000 < prev.task_us  # cur was queued during the pause
        if waiting:
            gaps.append({"at_s": round((prev.task_us - t0) / 1e6, 3),
                         "gap_ms": round((cur.task_us - prev.task_us) / 1000, 1)})
    return sorted(gaps, key=lambda g: -g["gap_ms"])[:top]


def worst_lag_windows(facts: Facts, top: int = 10, window_ms: int = 100
                      ) -> list[dict[str, float]]:
    """The ``top`` windows of slot time with the largest fire lag (slot -> enqueued;
    negative when fired ahead by the lookahead): when lag spikes, this says whether it is
    one stall or a period (GC, trims, reclaims)."""
    worst: dict[int, int] = {}
    for r in facts.runs.values():
        w, lag = r.slot_ms // window_ms, r.enq_ms - r.slot_ms
        worst[w] = max(worst[w], lag) if w in worst else lag
    if not worst:
        return []
    t0 = min(worst)
    ranked = sorted(worst.items(), key=lambda kv: -kv[1])[:top]
    return [{"at_s": (w - t0) * window_ms / 1000, "fire_lag_ms": lag} for w, lag in ranked]


def span_ms(facts: Facts) -> tuple[int, int]:
    """(earliest slot, latest completion) of the completed runs."""
    runs = [r for r in facts.runs.values() if r.successes]
    if not runs:
        return 0, 0
    return min(r.slot_ms for r in runs), max(r.end_ms for r in runs)
