"""Fire-time arithmetic: validating schedules and computing the next fire instant.

Owns: cron semantics (seconds field, time zones, DST), intervals, misfire decisions.
Must not: touch Redis or read a clock; every function takes ``now_ms``/``after_ms``.

DST follows Vixie cron (docs/decisions.md): a cron whose second, minute and hour
fields are all fixed is *wall-clock*: in a repeated hour it fires once (first
occurrence) and a slot inside a skipped hour fires at the instant the clock jumps.
Any other cron is *elapsed-time*: it fires at each matching local time as it
happens (twice through a repeated hour, never in a skipped one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from croniter import CroniterBadDateError, croniter

from rsched.errors import ValidationError
from rsched.limits import MAX_TIME_MS, check_count, check_cron_steps
from rsched.models import At, Cron, Every, Immediate, Misfire, Schedule, Trigger

# An `at` further in the past than this is rejected as a probable mistake.
MAX_AT_PAST_MS = 3_600_000
# Offsets never change by more than this at one transition (2h covers double summer time).
_MAX_SHIFT = timedelta(hours=3)
# A cron's next fire may be this far out (Feb 29 on a given weekday: 40 years at most).
_NEAR_YEAR_10000_MS = 50 * 366 * 86_400_000


@dataclass(frozen=True)
class CronRule:
    expr: str  # normalised to 6 fields, seconds first
    zone: ZoneInfo
    wall_clock: bool


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
    return CronRule(norm, zone, wall)


def validate_schedule(schedule: Schedule, now_ms: int) -> None:
    """Raise ValidationError with a precise message if the schedule cannot fire."""
    try:  # Structs built in Python skip their constraints; a round trip applies them
        msgspec.convert(msgspec.to_builtins(schedule), type(schedule))
    except msgspec.ValidationError as exc:
        raise ValidationError(f"invalid {type(schedule).__name__.lower()} schedule: {exc}") \
            from exc
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
            nxt = _cron_next(parse_cron(expr, tz), after_ms)
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
    """What to do with a due slot found at ``now_ms``, by the misfire policy."""
    sched = trigger.schedule
    late = now_ms - slot_ms > trigger.grace_s * 1000
    if not late or isinstance(sched, Immediate | At):
        return FireDecision(True, next_fire(sched, slot_ms), 0)
    if trigger.misfire is Misfire.CATCH_UP:
        return _catch_up(trigger, slot_ms, now_ms)
    nxt, missed = _future_counting(sched, slot_ms, now_ms, limit=100_000)
    if trigger.misfire is Misfire.SKIP:
        return FireDecision(False, nxt, missed)
    return FireDecision(True, nxt, missed - 1)


def _catch_up(trigger: Trigger, slot_ms: int, now_ms: int) -> FireDecision:
    # Fire this slot and leave the next (possibly past) slot due, but never more than
    # catch_up_max missed slots: older ones are skipped in one jump.
    sched = trigger.schedule
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
    if isinstance(sched, Every):
        nxt = _every_after(sched, now_ms)
        missed = (now_ms - slot_ms) // sched.every_ms + 1
        return nxt, int(missed)
    missed, cur = 0, slot_ms
    while missed < limit:
        missed += 1
        nxt = next_fire(sched, cur)
        if nxt is None or nxt > now_ms:
            return nxt, missed
        cur = nxt
    return next_fire(sched, now_ms), missed


def _every_after(sched: Every, after_ms: int) -> int | None:
    anchor = sched.start_ms if sched.start_ms is not None else after_ms
    if after_ms < anchor:
        nxt = anchor
    else:
        nxt = anchor + ((after_ms - anchor) // sched.every_ms + 1) * sched.every_ms
    return None if sched.end_ms is not None and nxt > sched.end_ms else nxt


def _cron_next(rule: CronRule, after_ms: int) -> int | None:
    """Smallest fire instant > after_ms, walking local wall times with croniter.

    Local wall time is monotonic except within _MAX_SHIFT of a transition, so the
    walk only starts earlier, and looks further, when a transition is near."""
    after = datetime.fromtimestamp(after_ms / 1000, UTC)
    local = after.astimezone(rule.zone).replace(tzinfo=None)
    if _near_transition(rule.zone, after_ms):
        local -= _MAX_SHIFT
    it = croniter(rule.expr, local, second_at_beginning=True)
    best: int | None = None
    best_local = local
    for _ in range(1_000_000):
        try:
            cand: datetime = it.get_next(datetime)
        except CroniterBadDateError:
            return best
        if best is not None and cand - best_local > _MAX_SHIFT:
            return best
        for inst in _instants(rule, cand):
            if inst > after_ms and (best is None or inst < best):
                best, best_local = inst, cand
        if best is not None and best_local is cand and not _near_transition(rule.zone, best):
            return best
        if cand.year > after.year + 30:
            break
    return best


def _near_transition(zone: ZoneInfo, at_ms: int) -> bool:
    shift = _MAX_SHIFT.total_seconds()
    t = at_ms / 1000
    return datetime.fromtimestamp(t - shift, zone).utcoffset() != datetime.fromtimestamp(
        t + shift, zone).utcoffset()


def _instants(rule: CronRule, naive: datetime) -> list[int]:
    """UTC instants (ms) at which local wall time ``naive`` fires under the DST rule."""
    early = naive.replace(tzinfo=rule.zone, fold=0)
    late = naive.replace(tzinfo=rule.zone, fold=1)
    e_utc, l_utc = early.astimezone(UTC), late.astimezone(UTC)
    exists = e_utc.astimezone(rule.zone).replace(tzinfo=None) == naive
    if not exists:
        return [_ms(_jump_instant(rule, naive, min(e_utc, l_utc), max(e_utc, l_utc)))] \
            if rule.wall_clock else []
    if e_utc == l_utc or rule.wall_clock:
        return [_ms(e_utc)]
    return [_ms(e_utc), _ms(l_utc)]


def _jump_instant(rule: CronRule, naive: datetime, lo: datetime, hi: datetime) -> datetime:
    """The instant the clock jumps over the nonexistent local time ``naive``."""
    lo_s, hi_s = int(lo.timestamp()), int(hi.timestamp())
    while lo_s < hi_s:
        mid = (lo_s + hi_s) // 2
        if datetime.fromtimestamp(mid, rule.zone).replace(tzinfo=None) > naive:
            hi_s = mid
        else:
            lo_s = mid + 1
    return datetime.fromtimestamp(lo_s, UTC)


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()
