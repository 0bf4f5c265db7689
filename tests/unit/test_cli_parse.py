"""The CLI's spellings: durations, instants, labels, JSON arguments (rsched/cli/parse.py),
the job options' JobDef (jobdef.py) and the job file round trip (jobfile.py)."""

from __future__ import annotations

import pytest

from rsched.cli import jobdef, jobfile, parse
from rsched.errors import ValidationError
from rsched.models import At, Cron, Every, Immediate, JobDef, Misfire, RetryPolicy


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("250ms", 0.25), ("1.5d", 129600.0),
    ("2h0m5s", 7205.0), ("90", 90.0), (" 1M ", 60.0), ("0s", 0.0), ("1m500ms", 60.5)])
def test_durations_in_human_units(text: str, seconds: float) -> None:
    assert parse.duration_s(text) == seconds


@pytest.mark.parametrize(("text", "message"), [
    ("3q", "use units d, h, m, s, ms"), ("", "use units"), ("5m5m", "a unit appears twice"),
    ("-5s", "use units"), ("4000d", "must be within 0s .. 3650d"), ("1h 30m", "use units")])
def test_bad_durations_say_why(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse.duration_s(text, "--grace")


@pytest.mark.parametrize("seconds", [0.25, 1.0, 30.0, 90.0, 300.0, 5400.0, 86_400.0 * 3 + 1,
                                     0.001, 12.5])
def test_format_duration_reads_back_exactly(seconds: float) -> None:
    text = parse.format_duration(seconds)
    assert parse.duration_s(text) == seconds


def test_format_duration_is_the_shortest_spelling() -> None:
    assert [parse.format_duration(s) for s in (5400.0, 0.25, 60.5, 0.0)] == [
        "1h30m", "250ms", "1m500ms", "0s"]
    assert parse.format_duration(0.0001) == 0.0001  # no exact ms: a number of seconds


def test_every_interval_is_at_least_a_millisecond() -> None:
    assert parse.every_ms("1h30m") == 5_400_000
    with pytest.raises(ValidationError, match="at least 1ms"):
        parse.every_ms("0s")


def test_instants_are_iso_8601_and_utc_without_an_offset() -> None:
    assert parse.instant_ms("2027-01-01T09:00+01:00") == 1_798_790_400_000
    assert parse.instant_ms("2027-01-01T08:00:00Z") == 1_798_790_400_000
    assert parse.instant_ms("2027-01-01T08:00") == 1_798_790_400_000
    assert parse.iso(1_798_790_400_000) == "2027-01-01T08:00:00Z"
    assert parse.iso(1_798_790_400_250) == "2027-01-01T08:00:00.250Z"
    assert parse.instant_ms(parse.iso(1_798_790_400_250) or "") == 1_798_790_400_250
    for bad in ("tomorrow", "2027-13-01", "0001-01-01T00:00Z"):
        with pytest.raises(ValidationError, match="--at"):
            parse.instant_ms(bad, "--at")


def test_labels_and_json_arguments() -> None:
    assert parse.labels(["team=data", "tier=", "team=ops"]) == {"team": "ops", "tier": ""}
    with pytest.raises(ValidationError, match="use key=value"):
        parse.labels(["team"])
    assert parse.json_value('[1, "a"]', "--args", list) == [1, "a"]
    with pytest.raises(ValidationError, match="--kwargs: must be a JSON object"):
        parse.json_value("[1]", "--kwargs", dict)
    with pytest.raises(ValidationError, match="--args: not JSON"):
        parse.json_value("[1,", "--args", list)


def _opts(**given: object) -> dict[str, object]:
    return {n: given.get(n, False if t is bool else None)
            for n, (t, _, _) in jobdef.OPTIONS.items()}


def test_job_options_build_a_jobdef_and_update_changes_only_what_is_given() -> None:
    base = jobdef.build(JobDef(task="t"), _opts(
        cron="0 30 9 * * mon-fri", tz="Europe/Berlin", max_attempts=5, backoff="10s",
        misfire=Misfire.SKIP, grace="2m", name="daily", label=["team=data", "tier=1"],
        kwargs='{"a": 1}', timeout="none"))
    assert base.schedule == Cron(expr="0 30 9 * * mon-fri", tz="Europe/Berlin")
    assert base.retry == RetryPolicy(max_attempts=5, backoff_s=10.0)
    assert (base.misfire, base.grace_s, base.name, base.kwargs, base.timeout_s) == (
        Misfire.SKIP, 120.0, "daily", {"a": 1}, None)
    tz_only = jobdef.build(base, _opts(tz="UTC", label=["tier-"]))
    assert tz_only.schedule == Cron(expr="0 30 9 * * mon-fri", tz="UTC")
    assert tz_only.labels == {"team": "data"} and tz_only.retry == base.retry
    assert jobdef.build(base, _opts()) == base
    assert jobdef.build(base, _opts(every="1h30m")).schedule == Every(every_ms=5_400_000)
    assert jobdef.build(base, _opts(now=True)).schedule == Immediate()


@pytest.mark.parametrize(("given", "message"), [
    ({"every": "1s", "cron": "* * * * *"}, "give one schedule, not --cron and --every"),
    ({"at": "2027-01-01T00:00Z", "tz": "UTC"}, "--tz applies to a --cron schedule"),
    ({"cron": "* * * * *", "start": "2027-01-01T00:00Z"}, "--start applies to an --every"),
    ({"every": "soon"}, "interval 'soon'"), ({"backoff": "x"}, "--backoff 'x'"),
])
def test_job_options_refuse_bad_combinations(given: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        jobdef.build(JobDef(task="t"), _opts(**given))


def test_a_job_file_reads_into_jobdefs_and_writes_back_the_same() -> None:
    text = """
jobs:
  - name: nightly
    task: reports.build
    cron: "0 3 * * *"
    tz: Europe/Berlin
    retry: {max_attempts: 5, backoff: 30s}
    timeout: 1h
    labels: {team: data}
  - name: poll
    task: feeds.poll
    every: 90s
    start: 2027-01-01T00:00:00Z
    queue: feeds
    timeout: null
  - {name: launch, task: launch.go, at: "2027-01-01T09:00+01:00", overlap: forbid}
"""
    jobs = jobfile.load(text, "acme")
    nightly, poll, launch = jobs
    assert nightly.schedule == Cron(expr="0 3 * * *", tz="Europe/Berlin")
    assert nightly.retry == RetryPolicy(max_attempts=5, backoff_s=30.0)
    assert (nightly.timeout_s, nightly.tenant, nightly.labels) == (3600.0, "acme",
                                                                     {"team": "data"})
    assert poll.schedule == Every(every_ms=90_000, start_ms=1_798_761_600_000)
    assert poll.timeout_s is None and poll.queue == "feeds"
    assert launch.schedule == At(at_ms=1_798_790_400_000)
    again = jobfile.load(jobfile.dump(jobs), "acme")
    assert again == jobs
    assert all(not jobfile.changes(a, b) for a, b in zip(jobs, again, strict=True))
    assert "queue" not in jobfile.dump([launch]), "defaults are left out"


@pytest.mark.parametrize(("text", "message"), [
    ("jobs: [{name: a, task: t, every: 1s, crn: x}]", "unknown field `crn`"),
    ("jobs: [{name: a, task: t}]", "give exactly one of cron, every, at, now"),
    ("jobs: [{name: a, task: t, every: 1s}, {name: a, task: u, every: 2s}]",
     "name 'a' appears twice"),
    ("jobs: [{name: a, task: t, every: 3q}]", "interval '3q'"),
    ("jobs: [{task: t, every: 1s}]", "missing required field `name`"),
    ("jobs: [", "not YAML"),
])
def test_a_bad_job_file_says_where(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        jobfile.load(text, "default")


def test_changes_name_the_fields_in_file_spelling() -> None:
    a = JobDef(task="t", name="a", schedule=Every(every_ms=60_000))
    b = JobDef(task="t", name="a", schedule=Every(every_ms=120_000),
               retry=RetryPolicy(max_attempts=9))
    assert jobfile.changes(a, b) == {"every": ("1m", "2m"), "retry.max_attempts": (3, 9)}
