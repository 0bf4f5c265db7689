"""Fast local-time arithmetic under timing.py: zone offset tables and the cron matcher.

Owns: a zone's offset changes as sorted tables (bisect instead of walking datetimes) and
the lookups on them (the offset, the last change within a day, the next change),
and ``match_after``, the first local wall time a cron matches. Must not: decide DST
semantics (timing.py does, on top of these), touch Redis or read a clock.

``match_after`` gives exactly croniter's answer (tests/unit/test_timing_fast.py checks it
against croniter itself). It answers the common case, a match later the same local day or
within the next week, from the cron's second/minute/hour sets; whether a date matches at
all (day of month, month, day of week, Vixie OR/AND, ``L``, ``#``) is asked of croniter
once per (cron, date) and remembered. Everything else (no match within a week, special
time fields) goes to croniter as before.
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from copy import copy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

DAY_MS = 86_400_000
_DAY_S = 86_400
_SAMPLE_MS = 3 * DAY_MS
_ONE_MS = timedelta(milliseconds=1)
NAIVE_EPOCH = datetime(1970, 1, 1)
_WEEK_DAYS = 7  # days searched from the sets before asking croniter
_DAYS_KEPT = 4096  # remembered (date -> matches?) answers per cron, then forgotten
_ZONES_KEPT = 1024


# -- zone offsets -------------------------------------------------------------------------
@dataclass(frozen=True)
class ZoneTable:
    """A zone's offset changes in (start_ms, end_ms]: one UTC year (year_transitions)."""

    start_ms: int
    end_ms: int
    at: tuple[int, ...]  # change instants (ms): the new offset holds from `at` on
    before: tuple[int, ...]  # offset (ms) before each change
    after: tuple[int, ...]  # offset (ms) from each change on
    base: int  # offset at start_ms

    def offset(self, at_ms: int) -> int:
        i = bisect_right(self.at, at_ms)
        return self.after[i - 1] if i else self.base


_TABLES: dict[ZoneInfo, ZoneTable] = {}  # the last table used per zone


def zone_table(zone: ZoneInfo, at_ms: int) -> ZoneTable | None:
    """The table of the UTC year of at_ms (None outside 1901..9998: callers walk
    datetimes). One year only, so a first call in a zone and year costs what it did."""
    t = _TABLES.get(zone)
    if t is not None and t.start_ms <= at_ms < t.end_ms:
        return t
    year = year_of(at_ms)
    if not 1900 < year < 9999:
        return None
    t = _table(zone, year)
    if len(_TABLES) >= _ZONES_KEPT:
        _TABLES.clear()
    _TABLES[zone] = t
    return t


@lru_cache(maxsize=256)
def _table(zone: ZoneInfo, year: int) -> ZoneTable:
    changes = year_transitions(zone, year)
    start, end = _year_span(year)
    return ZoneTable(start, end, tuple(c[0] for c in changes), tuple(c[1] for c in changes),
                     tuple(c[2] for c in changes), offset_ms(zone, start))


def _year_span(year: int) -> tuple[int, int]:
    """The UTC year's first and the next year's first instant, as ms."""
    return (int(datetime(year, 1, 1, tzinfo=UTC).timestamp()) * 1000,
            int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp()) * 1000)


def offset_ms(zone: ZoneInfo, at_ms: int) -> int:
    off = datetime.fromtimestamp(at_ms / 1000, zone).utcoffset()
    return (off or timedelta()) // _ONE_MS


@lru_cache(maxsize=4096)
def year_transitions(zone: ZoneInfo, year: int) -> tuple[tuple[int, int, int], ...]:
    """Offset changes in the UTC year ``year`` (start exclusive, end inclusive), as
    (instant ms, offset before, offset after). Since 1970 tzdata has no two changes less
    than 6.9 days apart, so sampling every _SAMPLE_MS finds each; bisection then finds its
    second."""
    start, end = _year_span(year)
    out: list[tuple[int, int, int]] = []
    prev_at, prev_off = start, offset_ms(zone, start)
    while prev_at < end:
        at = min(prev_at + _SAMPLE_MS, end)
        off = offset_ms(zone, at)
        if off != prev_off:
            out.append((_bisect_change(zone, prev_at, at, prev_off), prev_off, off))
        prev_at, prev_off = at, off
    return tuple(out)


def transition_within_day(zone: ZoneInfo, table: ZoneTable | None,
                           at_ms: int) -> tuple[int, int] | None:
    """The last offset change in (at_ms - 1 day, at_ms]: (instant ms, offset before)."""
    if table is not None and table.start_ms + DAY_MS <= at_ms < table.end_ms:
        i = bisect_right(table.at, at_ms)
        if i and table.at[i - 1] > at_ms - DAY_MS:
            return table.at[i - 1], table.before[i - 1]
        return None
    for year in sorted({year_of(at_ms - DAY_MS), year_of(at_ms)}, reverse=True):
        for when, before, _ in reversed(year_transitions(zone, year)):
            if at_ms - DAY_MS < when <= at_ms:
                return when, before
    return None


def next_transition(zone: ZoneInfo, table: ZoneTable | None, after_ms: int,
                     until_ms: int) -> tuple[int, int] | None:
    """The first offset change in (after_ms, until_ms]: (instant ms, offset after)."""
    if table is not None and table.start_ms <= after_ms < table.end_ms:
        i = bisect_right(table.at, after_ms)
        if i < len(table.at):
            return (table.at[i], table.after[i]) if table.at[i] <= until_ms else None
        if until_ms <= table.end_ms:
            return None
    for year in range(year_of(after_ms), year_of(until_ms) + 1):
        for when, _, after in year_transitions(zone, year):
            if after_ms < when <= until_ms:
                return when, after
    return None


def _bisect_change(zone: ZoneInfo, lo_ms: int, hi_ms: int, lo_off: int) -> int:
    """The first whole second in (lo_ms, hi_ms] whose offset is not lo_off."""
    lo_s, hi_s = lo_ms // 1000, hi_ms // 1000
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if offset_ms(zone, mid * 1000) == lo_off:
            lo_s = mid
        else:
            hi_s = mid
    return hi_s * 1000


def year_of(at_ms: int) -> int:
    return time.gmtime(at_ms // 1000).tm_year


# -- the cron matcher ---------------------------------------------------------------------
@dataclass(frozen=True)
class TimeSets:
    """A cron's seconds, minutes and hours as sorted tuples, and its dates' answers."""

    hours: tuple[int, ...]
    minutes: tuple[int, ...]
    seconds: tuple[int, ...]
    days: dict[int, bool]  # day number since 1970-01-01 -> whether the date matches

    @property
    def first_s(self) -> int:
        return self.hours[0] * 3600 + self.minutes[0] * 60 + self.seconds[0]


def time_sets(it: croniter) -> TimeSets | None:
    """The time fields of a parsed cron (croniter's order: minute, hour, dom, month, dow,
    second); None when one is not a plain set of numbers."""
    fields = [it.expanded[1], it.expanded[0], it.expanded[5]]
    out: list[tuple[int, ...]] = []
    for values, size in zip(fields, (24, 60, 60), strict=True):
        if values == ["*"]:
            values = list(range(size))
        if not values or not all(type(v) is int and 0 <= v < size for v in values):
            return None
        out.append(tuple(sorted(set(values))))
    return TimeSets(out[0], out[1], out[2], {})


def match_after(it: croniter, sets: TimeSets | None, local_ms: int) -> int | None:
    """The first local wall time (naive, as ms) > local_ms that the cron matches."""
    if sets is not None:
        sec = local_ms // 1000 + 1  # slots are whole seconds
        day, tod = divmod(sec, _DAY_S)
        if _day_matches(it, sets, day):
            hit = _next_time_of_day(sets, tod)
            if hit is not None:
                return (day * _DAY_S + hit) * 1000
        for d in range(day + 1, day + 1 + _WEEK_DAYS):
            if _day_matches(it, sets, d):
                return (d * _DAY_S + sets.first_s) * 1000
    return croniter_after(it, local_ms)


def croniter_after(it: croniter, local_ms: int) -> int | None:
    try:
        got: datetime = copy(it).get_next(datetime, NAIVE_EPOCH + timedelta(
            milliseconds=local_ms))
    except CroniterBadDateError:
        return None
    return (got - NAIVE_EPOCH) // _ONE_MS


def _day_matches(it: croniter, sets: TimeSets, day: int) -> bool:
    got = sets.days.get(day)
    if got is None:
        # The date matches iff croniter's first match after the previous day's last
        # second falls on it (its first time of day always exists).
        first = croniter_after(it, day * DAY_MS - 1000)
        got = first is not None and first // DAY_MS == day
        if len(sets.days) >= _DAYS_KEPT:
            sets.days.clear()
        sets.days[day] = got
    return got


def _next_time_of_day(sets: TimeSets, tod: int) -> int | None:
    """The first second of the day >= tod whose hour, minute and second all match."""
    h, rest = divmod(tod, 3600)
    m, s = divmod(rest, 60)
    hours, minutes, seconds = sets.hours, sets.minutes, sets.seconds
    i = bisect_left(hours, h)
    if i == len(hours):
        return None
    if hours[i] == h:
        j = bisect_left(minutes, m)
        if j < len(minutes) and minutes[j] == m:
            k = bisect_left(seconds, s)
            if k < len(seconds):
                return h * 3600 + m * 60 + seconds[k]
            j += 1
        if j < len(minutes):
            return h * 3600 + minutes[j] * 60 + seconds[0]
        i += 1
        if i == len(hours):
            return None
    return hours[i] * 3600 + minutes[0] * 60 + seconds[0]
