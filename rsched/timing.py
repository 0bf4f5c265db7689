"""Fire-time arithmetic: validating schedules and computing the next fire instant.

Owns: cron semantics (seconds field, time zones, DST), intervals, misfire decisions.
Must not: touch Redis or read a clock; every function takes ``now_ms``/``after_ms``.

DST follows Vixie cron (docs/decisions.md): a cron whose second, minute and hour
fields are all fixed is *wall-clock*: in a repeated hour it fires once (first
occurrence) and a slot inside a skipped hour fires at the instant the clock jumps.
Any other cron is *elapsed-time*: it fires at each matching local time as it
happens (twice through a repeated hour, never in a skipped one). Day of month and
day of week are ANDed when either starts with ``*``, ORed when both are restricted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from croniter import croniter

from rsched.crontime import (
    NAIVE_EPOCH,
    TimeSets,
    match_after,
    next_transition,
    offset_ms,
    time_sets,
    transition_within_day,
    zone_table,
)
from rsched.errors import ValidationError
from rsched.limits import (
    MAX_CRON_EXPR,
    MAX_EVERY_MS,
    MAX_TIME_MS,
    MAX_TZ_NAME,
    check_count,
    check_cron_steps,
)
from rsched.models import At, Cron, Every, Immediate, Misfire, Schedule, Trigger

# An `at` further in the past than this is rejected as a probable mistake.
MAX_AT_PAST_MS = 3_600_000
# A cron's next fire may be this far out (Feb 29 on a given weekday: 40 years at most).
_NEAR_YEAR_10000_MS = 50 * 366 * 86_400_000
# Cron next fires remembered, per (expression, zone, after): jobs that share a cron share
# its slots, so each slot is computed once for all of them and for every tick. Kept small:
# a full memo's dict is rebuilt now and then as entries churn, ~0.6 ms at 16k entries.
NEXT_MEMO_SIZE = 4096


@dataclass(frozen=True)
class CronRule:
    expr: str  # normalised to 6 fields, seconds first
    zone: ZoneInfo
    wall_clock: bool
    iter: croniter = field(compare=False)  # parsed once; copied per use (thread-safe)
    sets: TimeSets | None = field(compare=False)  # its time fields, for the fast matcher


@lru_cache(maxsize=4096)
def parse_cron(expr: str, tz: str) -> CronRule:
    fields = expr.split()
    if len(fields) not in (5, 6):
        raise ValidationError(f"cron {expr!r}: expected 5 fields, or 6 with seconds first")
    if len(fields) == 5:
        fields = ["0", *fields]
    norm = " ".join(fields)
    if not croniter.is_valid(norm, second_at_beginning=True):
        raise ValidationError(f"cron {expr!r}: invalid expression")
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValidationError(f"unknown time zone {tz!r}") from exc
    wall = not any(f.startswith("*") for f in fields[:3])
    # implement_cron_bug: day-of-month and day-of-week are ANDed when either starts with
    # `*` and ORed when both are restricted, as in Vixie cron (docs/decisions.md).
    it = croniter(norm, NAIVE_EPOCH, second_at_beginning=True, implement_cron_bug=True)
    return CronRule(norm, zone, wall, it, time_sets(it))


def _time_ok(ms: object, optional: bool = True) -> bool:
    return (optional and ms is None) or (type(ms) is int and 0 <= ms <= MAX_TIME_MS)


def _text_ok(text: object, most: int) -> bool:
    return type(text) is str and 1 <= len(text) <= most


def fields_ok(schedule: Schedule) -> bool:
    """Whether a schedule's fields meet the constraints models.py declares, checked
    directly (the common case: cheaper than a msgspec round trip). False only means
    "not proven": the round trip then decides and words the error. A unit test holds
    this to the declared constraints (test_timing.py)."""
    match schedule:
        case At(at_ms=at):
            return _time_ok(at, optional=False)
        case Every(every_ms=every, start_ms=start, end_ms=end):
            return (type(every) is int and 1 <= every <= MAX_EVERY_MS and _time_ok(start)
                    and _time_ok(end))
        case Cron(expr=expr, tz=tz, end_ms=end):
            return _text_ok(expr, MAX_CRON_EXPR) and _text_ok(tz, MAX_TZ_NAME) and _time_ok(end)
        case Immediate():
            return True
    return False


def validate_schedule(schedule: Schedule, now_ms: int) -> None:
    """Raise ValidationError with a precise message if the schedule cannot fire."""
    if not fields_ok(schedule):
        try:  # Structs built in Python skip their constraints; a round trip applies them
            msgspec.convert(msgspec.to_builtins(schedule), type(schedule))
        except msgspec.ValidationError as exc:
            raise ValidationError(f"invalid {type(schedule).__name__.lower()} schedule: "
                                  f"{exc}") from exc
    match schedule:
        case At(at_ms=at):
            if at < now_ms - MAX_AT_PAST_MS:
                raise ValidationError(
                    f"at {_iso(at)} is more than {MAX_AT_PAST_MS // 60000} minutes in the past"
                )
        case Every(every_ms=every, start_ms=start, end_ms=end):
            if every <= 0:
                raise ValidationError(f"every: interval must be positive, got {every} ms")
            if end is not None and end <= (start if start is not None else now_ms):
                raise ValidationError("every: end is before the first fire")
        case Cron(expr=expr, tz=tz, end_ms=end):
            rule = parse_cron(expr, tz)
            check_cron_steps(expr)
            if end is not None and end <= now_ms:
                raise ValidationError("cron: end is in the past")
            if _cron_next(rule, now_ms) is None:
                raise ValidationError(f"cron {expr!r}: never fires")
        case Immediate():
            pass


def first_fire(schedule: Schedule, now_ms: int) -> int | None:
    """Score of the first slot of a newly created (or updated) job."""
    match schedule:
        case Immediate():
            return now_ms
        case At(at_ms=at):
            return at
        case Every(start_ms=start):
            if start is None:
                return now_ms
            return start if start >= now_ms else _every_after(schedule, now_ms - 1)
        case Cron():
            return next_fire(schedule, now_ms - 1)
    raise ValidationError(f"unknown schedule {schedule!r}")


def next_fire(schedule: Schedule, after_ms: int) -> int | None:
    """The first slot strictly after ``after_ms``; None once the schedule is exhausted."""
    match schedule:
        case Immediate() | At():
            return None
        case Every():
            return _every_after(schedule, after_ms)
        case Cron(expr=expr, tz=tz, end_ms=end):
            nxt = _cron_next_memo(expr, tz, after_ms)
            return None if nxt is None or (end is not None and nxt > end) else nxt
    raise ValidationError(f"unknown schedule {schedule!r}")


def preview(schedule: Schedule, now_ms: int, count: int) -> list[int]:
    """The next ``count`` fire instants from now (for the API and CLI); none after the
    year 9999."""
    check_count(count)
    out: list[int] = []
    nxt = first_fire(schedule, now_ms)
    while nxt is not None and nxt <= MAX_TIME_MS and len(out) < count:
        out.append(nxt)
        try:
            nxt = next_fire(schedule, nxt)
        except (OverflowError, ValueError):
            if out[-1] < MAX_TIME_MS - _NEAR_YEAR_10000_MS:
                raise
            break  # croniter walked past the year 9999
    return out


@dataclass(frozen=True)
class FireDecision:
    fire: bool  # enqueue a run for the slot read
    next_ms: int | None  # the job's next due score (None: no more slots)
    skipped: int  # slots deliberately not run (misfire policy)


def decide(trigger: Trigger, slot_ms: int, now_ms: int) -> FireDecision:
    """What to do with a due slot found at ``now_ms``, by the misfire policy.

    A slot is on time when it is the only one due and no later than the grace. Otherwise
    the job misfired: fire_once runs all its due slots as one run if the latest of them
    is still within the grace, skip runs none, catch_up runs each (at most catch_up_max).
    Either way the job then moves to its next slot after now, on its own phase."""
    sched = _anchored(trigger.schedule, slot_ms)
    if isinstance(sched, Immediate | At):
        return FireDecision(True, None, 0)
    grace_ms = trigger.grace_s * 1000
    nxt = next_fire(sched, slot_ms)
    if _on_time(grace_ms, slot_ms, now_ms, nxt):
        return FireDecision(True, nxt, 0)
    if trigger.misfire is Misfire.CATCH_UP:
        return _catch_up(trigger, sched, slot_ms, now_ms)
    nxt, due = _future_counting(sched, slot_ms, now_ms, limit=100_000)
    if trigger.misfire is Misfire.FIRE_ONCE and _due_within(sched, slot_ms, now_ms, grace_ms):
        return FireDecision(True, nxt, due - 1)
    return FireDecision(False, nxt, due)


class DecisionMemo:
    """``decide`` answers shared across ticks and jobs, keyed by (trigger blob, slot).

    An on-time answer depends on now only through "still on time", so it is reused while
    now is at most the slot plus its grace and before the next slot; any other answer only
    at the same now. Bounded by two generations of ``size // 2`` entries: when the newer
    fills up it becomes the older and the older is dropped (O(1) per entry; evicting the
    oldest of one dict costs a scan of the deleted slots in front of it)."""

    def __init__(self, size: int = 4096) -> None:
        self.half = max(1, size // 2)
        # key -> (decision, earliest now, latest now it holds for)
        self._new: dict[tuple[bytes, str], tuple[FireDecision, int, int]] = {}
        self._old: dict[tuple[bytes, str], tuple[FireDecision, int, int]] = {}

    def __len__(self) -> int:
        return len(self._new) + len(self._old)

    def get(self, key: tuple[bytes, str], now_ms: int) -> FireDecision | None:
        hit = self._new.get(key) or self._old.get(key)
        if hit is None or not hit[1] <= now_ms <= hit[2]:
            return None
        return hit[0]

    def put(self, key: tuple[bytes, str], trigger: Trigger, slot_ms: int, now_ms: int,
            d: FireDecision) -> None:
        """Remember ``d = decide(trigger, slot_ms, now_ms)``."""
        lo = hi = now_ms
        if d.fire and not d.skipped and _on_time(trigger.grace_s * 1000, slot_ms, now_ms,
                                                 d.next_ms):  # decide's on-time answer
            lo = -(1 << 62)
            hi = slot_ms + int(trigger.grace_s * 1000)
            if d.next_ms is not None:
                hi = min(hi, d.next_ms - 1)
        if len(self._new) >= self.half:
            self._old, self._new = self._new, {}
        self._new[key] = (d, lo, hi)


def _on_time(grace_ms: float, slot_ms: int, now_ms: int, nxt: int | None) -> bool:
    """A slot found at now_ms is on time: the only one due, and late by at most grace."""
    return now_ms - slot_ms <= grace_ms and (nxt is None or nxt > now_ms)


def jitter_offset_ms(job_id: str, slot_ms: int, jitter_ms: int) -> int:
    """How late a job fires its slot: in 0..jitter_ms, spread evenly over jobs and slots
    (a hash of both), yet the same for every process that asks (the due score is the
    slot plus this, and the compare-and-set of fire_due reads it back)."""
    if jitter_ms <= 0:
        return 0
    digest = hashlib.blake2b(f"{job_id}@{slot_ms}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (jitter_ms + 1)


def _anchored(sched: Schedule, slot_ms: int) -> Schedule:
    """An ``every`` without start_ms, anchored on one of its slots. Its slots are all
    creation time (or last update) + k * interval, so any slot keeps that phase."""
    if isinstance(sched, Every) and sched.start_ms is None:
        return msgspec.structs.replace(sched, start_ms=slot_ms)
    return sched


def _catch_up(trigger: Trigger, sched: Schedule, slot_ms: int, now_ms: int) -> FireDecision:
    # Fire this slot and leave the next (possibly past) slot due, but never more than
    # catch_up_max missed slots: older ones are skipped in one jump.
    missed: list[int] = [slot_ms]
    nxt = next_fire(sched, slot_ms)
    while nxt is not None and nxt <= now_ms and len(missed) <= trigger.catch_up_max:
        missed.append(nxt)
        nxt = next_fire(sched, nxt)
    if len(missed) <= trigger.catch_up_max:
        return FireDecision(True, missed[1] if len(missed) > 1 else nxt, 0)
    # Too many: jump to the last catch_up_max slots before now.
    recent: list[int] = []
    cur: int | None = slot_ms
    skipped = 0
    while cur is not None and cur <= now_ms:
        recent.append(cur)
        if len(recent) > trigger.catch_up_max:
            recent.pop(0)
            skipped += 1
        cur = next_fire(sched, cur)
    return FireDecision(False, recent[0] if recent else cur, skipped)


def _future_counting(sched: Schedule, slot_ms: int, now_ms: int,
                     limit: int) -> tuple[int | None, int]:
    """The first slot after now, and how many slots from slot_ms were missed."""
    if isinstance(sched, Every) and sched.start_ms is not None:
        last = now_ms if sched.end_ms is None else min(now_ms, sched.end_ms)
        return _every_after(sched, now_ms), (last - slot_ms) // sched.every_ms + 1
    missed, cur = 0, slot_ms
    while missed < limit:
        missed += 1
        nxt = next_fire(sched, cur)
        if nxt is None or nxt > now_ms:
            return nxt, missed
        cur = nxt
    return next_fire(sched, now_ms), missed


def _due_within(sched: Schedule, slot_ms: int, now_ms: int, grace_ms: float) -> bool:
    """Whether the latest slot due at now_ms (slot_ms or a later one) is within grace."""
    if now_ms - slot_ms <= grace_ms:
        return True
    recent = next_fire(sched, now_ms - int(grace_ms) - 1)
    return recent is not None and recent <= now_ms


def _every_after(sched: Every, after_ms: int) -> int | None:
    anchor = sched.start_ms if sched.start_ms is not None else after_ms
    if after_ms < anchor:
        nxt = anchor
    else:
        nxt = anchor + ((after_ms - anchor) // sched.every_ms + 1) * sched.every_ms
    return None if sched.end_ms is not None and nxt > sched.end_ms else nxt


@lru_cache(maxsize=NEXT_MEMO_SIZE)
def _cron_next_memo(expr: str, tz: str, after_ms: int) -> int | None:
    return _cron_next(parse_cron(expr, tz), after_ms)


def _cron_next(rule: CronRule, after_ms: int, fast: bool = True) -> int | None:
    """Smallest fire instant > after_ms, walking the zone's constant-offset segments.

    Within a segment local time is UTC plus one offset, so one croniter call finds the
    segment's first match; a match past the segment's end moves the walk to the next
    segment (at most a few per call). Wall-clock crons take a segment's local times from
    where the previous segment's local time ended: matches in a skipped hour fire at the
    jump, matches already passed in a repeated hour do not fire again.

    ``fast=False`` takes the reference path (croniter and datetime walks only, no tables
    or time sets): the tests hold the fast path to it."""
    table = zone_table(rule.zone, after_ms) if fast else None
    sets = rule.sets if fast else None
    off = table.offset(after_ms) if table else offset_ms(rule.zone, after_ms)
    seg = transition_within_day(rule.zone, table, after_ms)  # (start, offset before)
    lo = after_ms + off  # local ms, exclusive
    if seg is not None and rule.wall_clock:
        lo = max(lo, seg[0] + seg[1] - 1)
    match, searched, pos = match_after(rule.iter, sets, lo), lo, after_ms
    while match is not None:
        nxt = next_transition(rule.zone, table, pos, match - off)
        if nxt is None:
            return match - off if seg is None else max(seg[0], match - off)
        seg, off, pos = (nxt[0], off), nxt[1], nxt[0]
        lo = pos + (seg[1] if rule.wall_clock else off) - 1
        if not searched <= lo < match:
            match, searched = match_after(rule.iter, sets, lo), lo
    return None


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()
