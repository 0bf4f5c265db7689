"""Fire-time arithmetic: validation, intervals, 6-field cron, DST in Europe/Berlin, misfire."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

from rsched.errors import ValidationError
from rsched.limits import MAX_CRON_EXPR, MAX_EVERY_MS, MAX_TIME_MS, MAX_TZ_NAME
from rsched.models import At, Cron, Every, Immediate, Misfire, Trigger
from rsched.timing import decide, fields_ok, first_fire, next_fire, preview, validate_schedule

BERLIN = ZoneInfo("Europe/Berlin")
NOW = int(datetime(2024, 6, 1, tzinfo=UTC).timestamp() * 1000)


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def local(ms_: int) -> str:
    return datetime.fromtimestamp(ms_ / 1000, BERLIN).isoformat()


def test_six_field_cron_fires_on_exact_seconds() -> None:
    sched = Cron(expr="5,35 * * * * *")
    got = preview(sched, ms("2024-01-01T00:00:00+00:00"), 4)
    assert got == [ms("2024-01-01T00:00:05+00:00"), ms("2024-01-01T00:00:35+00:00"),
                   ms("2024-01-01T00:01:05+00:00"), ms("2024-01-01T00:01:35+00:00")]


def test_five_field_cron_fires_at_second_zero_in_zone() -> None:
    sched = Cron(expr="30 9 * * *", tz="Europe/Berlin")
    got = preview(sched, ms("2024-01-01T00:00:00+00:00"), 2)
    assert [local(g) for g in got] == ["2024-01-01T09:30:00+01:00", "2024-01-02T09:30:00+01:00"]


def test_wall_clock_cron_in_skipped_hour_fires_at_the_jump() -> None:
    # 2024-03-31 Berlin: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    got = preview(Cron(expr="30 2 * * *", tz="Europe/Berlin"), ms("2024-03-30T12:00:00+00:00"), 3)
    assert [local(g) for g in got] == ["2024-03-31T03:00:00+02:00", "2024-04-01T02:30:00+02:00",
                                       "2024-04-02T02:30:00+02:00"]


def test_wall_clock_slots_in_skipped_hour_coalesce() -> None:
    got = preview(Cron(expr="0 0,30 2 * * *", tz="Europe/Berlin"),
                  ms("2024-03-30T12:00:00+00:00"), 2)
    assert [local(g) for g in got] == ["2024-03-31T03:00:00+02:00", "2024-04-01T02:00:00+02:00"]


def test_wall_clock_cron_in_repeated_hour_fires_once() -> None:
    # 2024-10-27 Berlin: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    got = preview(Cron(expr="30 2 * * *", tz="Europe/Berlin"), ms("2024-10-26T12:00:00+00:00"), 2)
    assert [local(g) for g in got] == ["2024-10-27T02:30:00+02:00", "2024-10-28T02:30:00+01:00"]


def test_elapsed_cron_fires_twice_through_repeated_hour_and_never_in_skipped() -> None:
    hourly = Cron(expr="0 * * * *", tz="Europe/Berlin")
    fall = preview(hourly, ms("2024-10-26T23:30:00+00:00"), 3)
    assert [local(g) for g in fall] == ["2024-10-27T02:00:00+02:00", "2024-10-27T02:00:00+01:00",
                                        "2024-10-27T03:00:00+01:00"]
    spring = preview(hourly, ms("2024-03-30T23:30:00+00:00"), 3)
    assert [local(g) for g in spring] == ["2024-03-31T01:00:00+01:00",
                                          "2024-03-31T03:00:00+02:00",
                                          "2024-03-31T04:00:00+02:00"]


def test_elapsed_cron_crossing_fold_is_strictly_increasing() -> None:
    got = preview(Cron(expr="*/20 * * * * *", tz="Europe/Berlin"),
                  ms("2024-10-27T00:59:00+00:00"), 8)
    assert got == sorted(got) and len(set(got)) == 8
    assert got[2] + 20_000 == got[3]  # 02:59:40 CEST -> 02:00:00 CET is 20 s of elapsed time


def test_every_ignores_zones_and_anchors_on_start() -> None:
    sched = Every(every_ms=1500, start_ms=NOW)
    assert first_fire(sched, NOW - 10) == NOW
    assert next_fire(sched, NOW) == NOW + 1500
    assert next_fire(sched, NOW + 1600) == NOW + 3000
    assert next_fire(Every(every_ms=1000, start_ms=NOW, end_ms=NOW + 1000), NOW + 1000) is None


def test_one_shots_have_no_next() -> None:
    assert first_fire(Immediate(), NOW) == NOW
    assert first_fire(At(at_ms=NOW + 5), NOW) == NOW + 5
    assert next_fire(At(at_ms=NOW + 5), NOW + 5) is None


@pytest.mark.parametrize(("schedule", "message"), [
    (Cron(expr="61 * * * *"), "invalid expression"),
    (Cron(expr="* * *"), "expected 5 fields"),
    (Cron(expr="0 * * * *", tz="Mars/Olympus"), "unknown time zone"),
    (At(at_ms=NOW - 2 * 3_600_000), "in the past"),
    (Every(every_ms=1000, start_ms=NOW, end_ms=NOW - 1), "end is before"),
    (Cron(expr="0 0 30 2 *"), "never fires"),
])
def test_invalid_schedules_raise_one_typed_error(schedule: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        validate_schedule(schedule, NOW)  # type: ignore[arg-type]


def test_negative_interval_rejected_by_model() -> None:
    import msgspec

    with pytest.raises(msgspec.ValidationError, match="every_ms"):
        msgspec.convert({"type": "every", "every_ms": -5}, Every)


def trig(misfire: Misfire, every_ms: int = 1000, cap: int = 100) -> Trigger:
    return Trigger(schedule=Every(every_ms=every_ms, start_ms=NOW), misfire=misfire, grace_s=5,
                   catch_up_max=cap)


def test_on_time_slot_fires_and_advances_one_interval() -> None:
    d = decide(trig(Misfire.FIRE_ONCE), NOW, NOW + 10)
    assert (d.fire, d.next_ms, d.skipped) == (True, NOW + 1000, 0)


def test_fire_once_after_downtime_runs_once_then_next_future_slot() -> None:
    d = decide(trig(Misfire.FIRE_ONCE), NOW, NOW + 60_500)
    assert (d.fire, d.next_ms, d.skipped) == (True, NOW + 61_000, 60)


def test_skip_after_downtime_runs_nothing() -> None:
    d = decide(trig(Misfire.SKIP), NOW, NOW + 60_500)
    assert (d.fire, d.next_ms, d.skipped) == (False, NOW + 61_000, 61)


def test_catch_up_fires_every_missed_slot_within_bound() -> None:
    d = decide(trig(Misfire.CATCH_UP), NOW, NOW + 10_500)
    assert (d.fire, d.next_ms) == (True, NOW + 1000)


def test_catch_up_is_bounded() -> None:
    d = decide(trig(Misfire.CATCH_UP, cap=5), NOW, NOW + 60_500)
    assert d.fire is False and d.skipped == 56 and d.next_ms == NOW + 56_000
    d2 = decide(trig(Misfire.CATCH_UP, cap=5), NOW + 56_000, NOW + 60_500)
    assert d2.fire is True and d2.next_ms == NOW + 57_000


def test_fire_once_coalesces_slots_due_within_grace() -> None:
    # Paused 40 s with a 60 s grace: the 41 due slots are one run, not 41.
    trigger = Trigger(schedule=Every(every_ms=1000, start_ms=NOW), grace_s=60)
    d = decide(trigger, NOW, NOW + 40_000)
    assert (d.fire, d.next_ms, d.skipped) == (True, NOW + 41_000, 40)


def test_fire_once_does_not_fire_when_even_the_latest_due_slot_is_past_grace() -> None:
    hourly = Trigger(schedule=Every(every_ms=3_600_000, start_ms=NOW), grace_s=60)
    d = decide(hourly, NOW, NOW + 120_000)
    assert (d.fire, d.next_ms, d.skipped) == (False, NOW + 3_600_000, 1)
    d = decide(hourly, NOW, NOW + 3_630_000)  # the latest due slot is 30 s late: it runs
    assert (d.fire, d.next_ms, d.skipped) == (True, NOW + 7_200_000, 1)


def test_skip_runs_none_of_several_slots_due_within_grace() -> None:
    trigger = Trigger(schedule=Every(every_ms=1000, start_ms=NOW), misfire=Misfire.SKIP,
                      grace_s=60)
    d = decide(trigger, NOW, NOW + 40_500)
    assert (d.fire, d.next_ms, d.skipped) == (False, NOW + 41_000, 41)


def test_catch_up_within_grace_is_bounded() -> None:
    trigger = Trigger(schedule=Every(every_ms=100, start_ms=NOW), misfire=Misfire.CATCH_UP,
                      grace_s=60, catch_up_max=5)
    d = decide(trigger, NOW, NOW + 30_000)  # 301 slots due, all within grace
    assert (d.fire, d.next_ms, d.skipped) == (False, NOW + 29_600, 296)


@pytest.mark.parametrize("misfire", list(Misfire))
def test_every_without_start_keeps_its_phase_after_a_misfire(misfire: Misfire) -> None:
    created = NOW + 558  # slots at .558 s past each second
    sched = Every(every_ms=1000)
    first = first_fire(sched, created)
    assert first is not None
    d = decide(Trigger(schedule=sched, misfire=misfire, grace_s=5), first, created + 90_053)
    assert d.next_ms is not None and d.next_ms % 1000 == 558


def test_cron_day_of_month_and_week_and_when_one_starts_with_star() -> None:
    # Vixie cron: `*/2` starts with `*`, so "odd day AND Monday" (OR would give 635).
    sched = Cron(expr="0 12 */2 * mon")
    fires = preview(sched, ms("2026-01-01T00:00:00+00:00"), 1000)
    in_range = [f for f in fires if f < ms("2029-01-01T00:00:00+00:00")]
    assert len(in_range) == 80
    assert all(datetime.fromtimestamp(f / 1000, UTC).weekday() == 0 for f in in_range)
    assert all(datetime.fromtimestamp(f / 1000, UTC).day % 2 == 1 for f in in_range)


def test_cron_day_of_month_and_week_or_when_both_restricted() -> None:
    got = preview(Cron(expr="0 12 13 * mon"), ms("2026-02-01T00:00:00+00:00"), 4)
    assert [datetime.fromtimestamp(g / 1000, UTC).date().isoformat() for g in got] == [
        "2026-02-02", "2026-02-09", "2026-02-13", "2026-02-16"]  # the 13th is a Friday


@pytest.mark.parametrize("zone", ["America/New_York", "Australia/Lord_Howe", "Antarctica/Troll"])
def test_elapsed_cron_matches_a_minute_by_minute_reference_across_transitions(zone: str) -> None:
    # Local 01:00-03:59 every 20 minutes, through the skipped and the repeated hours of
    # 2026 (Lord Howe shifts by 30 minutes, Troll by 2 hours).
    tz = ZoneInfo(zone)
    sched = Cron(expr="*/20 1-3 * * *", tz=zone)
    changes = [s * 1000 for s in range(1767225600, 1798761600, 3600)
               if datetime.fromtimestamp(s, tz).utcoffset()
               != datetime.fromtimestamp(s + 3600, tz).utcoffset()]
    assert len(changes) == 2
    for change in changes:
        lo, hi = change - 6 * 3_600_000, change + 6 * 3_600_000
        want = [m * 60_000 for m in range(lo // 60_000 + 1, hi // 60_000)
                if (local := datetime.fromtimestamp(m * 60, tz)).hour in (1, 2, 3)
                and local.minute % 20 == 0]
        got = [f for f in preview(sched, lo + 1, len(want) + 1) if f < hi]
        assert got == want


_EDGE_MS: list[Any] = [-1, 0, MAX_TIME_MS, MAX_TIME_MS + 1, 5.0, True, "5"]
_TEXT: list[Any] = ["", "x", 5, None]


def _edge_schedules() -> list[Any]:
    """Schedules at and past each declared bound, and of wrong types."""
    e: Any = Every
    c: Any = Cron
    return [
        *(At(at_ms=v) for v in _EDGE_MS),
        *(e(every_ms=v) for v in [0, 1, MAX_EVERY_MS, MAX_EVERY_MS + 1, 1.5, False]),
        *(e(every_ms=1000, start_ms=v) for v in [None, *_EDGE_MS]),
        *(e(every_ms=1000, end_ms=v) for v in [None, *_EDGE_MS]),
        *(c(expr=v) for v in [*_TEXT, "x" * MAX_CRON_EXPR, "x" * (MAX_CRON_EXPR + 1)]),
        *(c(expr="0 * * * *", tz=v) for v in [*_TEXT, "x" * MAX_TZ_NAME,
                                               "x" * (MAX_TZ_NAME + 1)]),
        *(c(expr="0 * * * *", end_ms=v) for v in [None, *_EDGE_MS]),
        Immediate(),
    ]


@pytest.mark.parametrize("schedule", _edge_schedules())
def test_direct_field_check_accepts_only_what_the_declared_constraints_accept(
        schedule: Any) -> None:
    try:
        msgspec.convert(msgspec.to_builtins(schedule), type(schedule))
        valid = True
    except msgspec.ValidationError:
        valid = False
    assert fields_ok(schedule) == valid  # proven valid exactly when the model agrees
    if not valid:
        with pytest.raises(ValidationError, match=f"invalid {type(schedule).__name__.lower()} "
                                                  "schedule: Expected"):
            validate_schedule(schedule, NOW)
