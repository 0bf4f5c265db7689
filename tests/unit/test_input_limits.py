"""Every number, size and count a user gives is bounded (docs/decisions.md, Input limits)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from rsched.client import Client
from rsched.errors import Retry, ValidationError
from rsched.limits import (
    MAX_DURATION_S,
    MAX_EVERY_MS,
    MAX_SPEC_BYTES,
    MAX_TIME_MS,
    every_ms_of_seconds,
)
from rsched.models import At, Cron, Every, JobDef, RetryPolicy, Schedule
from rsched.timing import parse_cron, preview, validate_schedule

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z
YEAR_9990 = 253_086_681_600_000


@pytest.mark.parametrize("schedule, message", [
    (Every(every_ms=10**18), "every_ms"),
    (Every(every_ms=MAX_EVERY_MS + 1), "every_ms"),
    (Every(every_ms=1000, start_ms=MAX_TIME_MS + 1), "start_ms"),
    (Every(every_ms=1000, end_ms=10**18), "end_ms"),
    (At(at_ms=MAX_TIME_MS + 1), "at_ms"),
    (Cron(expr="0 0 * * *", end_ms=10**18), "end_ms"),
    (Cron(expr="0 0 * * *", tz="A" * 300), "tz"),
    (Cron(expr="0 0 * * *", tz=""), "tz"),
    (Cron(expr="0 " * 200), "expr"),
])
def test_out_of_range_schedule_values_are_rejected(schedule: Schedule, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        validate_schedule(schedule, NOW)


def test_largest_values_are_accepted() -> None:
    validate_schedule(Every(every_ms=MAX_EVERY_MS, start_ms=MAX_TIME_MS - 1), NOW)
    validate_schedule(At(at_ms=MAX_TIME_MS), NOW)
    assert MAX_TIME_MS + MAX_EVERY_MS < 2**53  # every stored time is exact as a Lua number


@pytest.mark.parametrize("tz", ["A" * 300, "Nowhere/Else", "../../etc/passwd"])
def test_bad_time_zone_is_a_validation_error_not_oserror(tz: str) -> None:
    with pytest.raises(ValidationError, match="time zone"):
        parse_cron("0 0 * * *", tz)


@pytest.mark.parametrize("expr", ["*/1000000000 * * * * *", "0 5/100 * * * *",
                                  "0 0 */25 * * *", "0 0 0 */32 * *", "0 0 0 * */13 *",
                                  "0 0 0 * * */9", "*/61 * * * *"])
def test_cron_step_beyond_its_field_is_rejected(expr: str) -> None:
    with pytest.raises(ValidationError, match="step"):
        validate_schedule(Cron(expr=expr), NOW)


@pytest.mark.parametrize("expr", ["*/60 * * * *", "0 */24 * * *", "0 0 1-31/31 * *",
                                  "*/15 9-17 * jan-mar/3 mon-fri/2"])
def test_cron_steps_within_their_field_are_accepted(expr: str) -> None:
    validate_schedule(Cron(expr=expr), NOW)


@pytest.mark.parametrize("count", [0, -1, 1001, 100_000_000])
def test_preview_count_is_bounded(count: int) -> None:
    with pytest.raises(ValidationError, match="count"):
        preview(Every(every_ms=1000), NOW, count)


@pytest.mark.parametrize("schedule", [Every(every_ms=MAX_EVERY_MS // 10),
                                      Cron(expr="0 0 1 1 *")])
def test_preview_stops_at_year_9999(schedule: Schedule) -> None:
    fires = preview(schedule, YEAR_9990, 1000)
    assert 9 <= len(fires) <= 11 and fires[-1] <= MAX_TIME_MS


@pytest.mark.parametrize("seconds", [0.0, -1.0, 1e15, 1e30, math.inf, -math.inf, math.nan])
def test_interval_in_seconds_is_bounded(seconds: float) -> None:
    with pytest.raises(ValidationError, match="interval"):
        every_ms_of_seconds(seconds)


def test_interval_in_seconds_converts() -> None:
    assert every_ms_of_seconds(0.001) == 1
    assert every_ms_of_seconds(MAX_EVERY_MS / 1000) == MAX_EVERY_MS


@pytest.mark.parametrize("fields, message", [
    ({"args": ["x" * MAX_SPEC_BYTES]}, "1 MiB"),
    ({"kwargs": {"blob": b"\0" * (10 << 20)}}, "1 MiB"),
    ({"task": "t" * 201}, "task"),
    ({"task": ""}, "task"),
    ({"tenant": "t" * 129}, "tenant"),
    ({"timeout_s": math.inf}, "timeout_s"),
    ({"timeout_s": MAX_DURATION_S + 1}, "timeout_s"),
    ({"grace_s": math.nan}, "grace_s"),
    ({"retry": RetryPolicy(backoff_s=math.inf)}, "backoff_s"),
    ({"retry": RetryPolicy(backoff_max_s=1e300)}, "backoff_max_s"),
    ({"retry": RetryPolicy(backoff_factor=1e9)}, "backoff_factor"),
    ({"schedule": Every(every_ms=10**18)}, "every_ms"),
])
def test_job_values_out_of_range_are_rejected(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):  # a missing kind: at construction
        Client._check(JobDef(**{"task": "t", **fields}), NOW)


def test_args_just_under_one_mib_are_accepted() -> None:
    Client._check(JobDef(task="t", args=["x" * (MAX_SPEC_BYTES - 100)]), NOW)


@pytest.mark.parametrize("delay", [-1.0, math.inf, math.nan, MAX_DURATION_S + 1])
def test_retry_delay_is_bounded(delay: float) -> None:
    with pytest.raises(ValueError, match="delay_s"):
        Retry(delay_s=delay)
    assert Retry.MAX_DELAY_S == MAX_DURATION_S
    assert Retry(delay_s=MAX_DURATION_S).delay_s == MAX_DURATION_S
