"""`rsched jobs ...`, `queues`, `dlq`, `status` and `keys list` in-process (CliRunner)
against a real redis-server: each verb's happy path, its bad input (exit 2, one line),
and --json output equal to the Client's data."""

from __future__ import annotations

import msgspec
import pytest

from rsched.models import Cron, Every, JobState, RetryPolicy
from tests.support.cli import Cli, fail_runs


@pytest.fixture
def cli(redis_url: str) -> Cli:
    return Cli(redis_url)


def test_jobs_add_with_each_kind_of_schedule_and_every_option(cli: Cli) -> None:
    cron = cli.json("jobs", "add", "reports.build", "--cron", "0 30 9 * * mon-fri", "--tz",
                    "Europe/Berlin", "--name", "daily", "--label", "team=data", "--queue",
                    "reports", "--args", '[1, "x"]', "--kwargs", '{"full": true}',
                    "--max-attempts", "5", "--backoff", "10s", "--backoff-max", "1h",
                    "--misfire", "skip", "--grace", "2m", "--overlap", "forbid",
                    "--timeout", "1h30m")
    job = cli.client(lambda c: c.get(cron["id"]))
    assert cron == msgspec.to_builtins(job)
    d = job.definition()
    assert d.schedule == Cron(expr="0 30 9 * * mon-fri", tz="Europe/Berlin")
    assert (d.name, d.labels, d.queue, d.args, d.kwargs) == (
        "daily", {"team": "data"}, "reports", [1, "x"], {"full": True})
    assert d.retry == RetryPolicy(max_attempts=5, backoff_s=10.0, backoff_max_s=3600.0)
    assert (d.misfire.value, d.grace_s, d.overlap.value, d.timeout_s) == (
        "skip", 120.0, "forbid", 5400.0)
    out = cli.ok("jobs", "add", "t", "--every", "30s", "--id", "poll").stdout
    assert out.startswith("created job poll, next fire ")
    at = cli.json("jobs", "add", "t", "--at", "2027-01-01T09:00+01:00")
    assert at["trigger"]["schedule"] == {"type": "at", "at_ms": 1_798_790_400_000}
    now = cli.json("jobs", "add", "t", "--now")
    assert now["trigger"]["schedule"] == {"type": "now"}


@pytest.mark.parametrize(("args", "message"), [
    (["t"], "jobs add: give a schedule: --cron, --every, --at or --now"),
    (["t", "--every", "3q"], "interval '3q': use units d, h, m, s, ms"),
    (["t", "--every", "1s", "--cron", "* * * * *"], "give one schedule, not --cron and --every"),
    (["t", "--cron", "61 * * * *"], "cron '61 * * * *'"),
    (["t", "--at", "next tuesday"], "--at 'next tuesday': not an ISO 8601 time"),
    (["t", "--now", "--args", "{"], "--args: not JSON"),
    (["t", "--now", "--kwargs", "[1]"], "--kwargs: must be a JSON object"),
    (["t", "--now", "--label", "team"], "label 'team': use key=value"),
    (["t", "--now", "--name", "-bad"], "invalid job name '-bad'"),
    (["t", "--now", "--queue", "a b"], "invalid queue name 'a b'"),
    (["t", "--now", "--max-attempts", "0"], "invalid job"),
])
def test_jobs_add_refuses_bad_input_with_exit_2(cli: Cli, args: list[str], message: str
                                                ) -> None:
    assert message in cli.bad("jobs", "add", *args)


def test_jobs_add_a_taken_name_exits_1(cli: Cli) -> None:
    cli.ok("jobs", "add", "t", "--every", "1m", "--name", "one")
    assert "job name 'one' is taken" in cli.bad("jobs", "add", "t", "--now", "--name", "one",
                                               code=1)


def test_jobs_update_changes_only_the_options_given(cli: Cli) -> None:
    job_id = cli.json("jobs", "add", "t", "--cron", "0 3 * * *", "--tz", "Europe/Berlin",
                      "--name", "n", "--label", "a=1", "--label", "b=2")["id"]
    out = cli.json("jobs", "update", job_id, "--tz", "UTC", "--label", "a-", "--label", "c=3",
                   "--max-attempts", "7")
    job = cli.client(lambda c: c.get(job_id))
    assert out == msgspec.to_builtins(job) and job.version == 2
    assert job.trigger.schedule == Cron(expr="0 3 * * *", tz="UTC")
    assert (job.labels, job.name, job.spec.retry.max_attempts) == ({"b": "2", "c": "3"}, "n", 7)
    assert cli.ok("jobs", "update", job_id, "--tz", "UTC").stdout.strip() == \
        f"update {job_id}: nothing to change"
    assert "(or its version changed)" in cli.bad("jobs", "update", job_id, "--every", "1m",
                                                 "--version", "1", code=1)
    assert "--start applies to an --every" in cli.bad("jobs", "update", job_id, "--start",
                                                      "2027-01-01T00:00Z")
    assert "job 'nope' not found" in cli.bad("jobs", "update", "nope", "--every", "1m", code=1)
    cli.ok("jobs", "update", job_id, "--every", "90s")
    assert cli.client(lambda c: c.get(job_id)).trigger.schedule == Every(every_ms=90_000)


def test_jobs_list_filters_and_json_matches_the_client(cli: Cli) -> None:
    a = cli.json("jobs", "add", "mail.send", "--every", "1m", "--queue", "mail", "--name",
                 "mailer", "--label", "team=ops")["id"]
    b = cli.json("jobs", "add", "reports.build", "--every", "1h", "--name", "report")["id"]
    cli.ok("jobs", "pause", b)
    listed = cli.json("jobs", "list")
    jobs = cli.client(lambda c: c.get_many([a, b]))
    assert sorted(listed, key=lambda j: j["id"]) == sorted(
        msgspec.to_builtins(jobs), key=lambda j: j["id"])
    ids = {"queue mail": ["--queue", "mail"], "paused": ["--state", "paused"],
           "label": ["--label", "team=ops"], "task": ["--task", "reports.build"],
           "prefix": ["--name-prefix", "rep"], "tenant": ["--tenant", "default"]}
    got = {k: [j["id"] for j in cli.json("jobs", "list", *v)] for k, v in ids.items()}
    assert got == {"queue mail": [a], "paused": [b], "label": [a], "task": [b],
                   "prefix": [b], "tenant": [a, b]}
    assert len(cli.json("jobs", "list", "--limit", "1")) == 1
    table = cli.ok("jobs", "list").stdout
    assert "mailer" in table and "every 1m" in table and "\x1b[" not in table, "no colour"
    assert "--state" in cli.bad("jobs", "list", "--state", "sleeping")
    assert "label 'x': use key=value" in cli.bad("jobs", "list", "--label", "x")


def test_jobs_show_runs_and_the_control_verbs(cli: Cli) -> None:
    job_id = cli.json("jobs", "add", "t", "--every", "1h", "--id", "nightly")["id"]
    run_id = cli.ok("jobs", "run-now", job_id).stdout.split("(")[1].rstrip(")\n")
    shown = cli.json("jobs", "show", job_id)

    async def data(c):  # type: ignore[no-untyped-def]
        return {"job": await c.get(job_id), "runs": await c.runs(job_id, 10)}

    assert shown == msgspec.to_builtins(cli.client(data))
    runs = cli.json("jobs", "runs", job_id)
    assert [r["id"] for r in runs] == [run_id] and runs[0]["status"] == "queued"
    assert "queued" in cli.ok("jobs", "runs", job_id).stdout
    assert f"job {job_id}" in cli.ok("jobs", "show", job_id).stdout
    for verb, state in (("pause", JobState.PAUSED), ("resume", JobState.ACTIVE),
                        ("cancel", JobState.CANCELLED)):
        assert cli.ok("jobs", verb, job_id).stdout.strip() == f"{verb} {job_id}: ok"
        assert cli.client(lambda c: c.get(job_id)).state is state
    assert "job 'x' not found" in cli.bad("jobs", "runs", "x", code=1)
    assert "only an active job can be paused" in cli.bad("jobs", "pause", job_id, code=1)


def test_jobs_preview_in_human_units(cli: Cli) -> None:
    ms = cli.json("jobs", "preview", "--cron", "0 0 12 * * *", "--tz", "Europe/Berlin",
                  "--count", "3")
    assert len(ms) == 3 and all(b - a == 86_400_000 for a, b in zip(ms, ms[1:], strict=False))
    lines = cli.ok("jobs", "preview", "--every", "1h30m", "--count", "2").stdout.split()
    assert len(lines) == 2 and all(ln.endswith("Z") for ln in lines)
    assert "give exactly one of --cron or --every" in cli.bad("jobs", "preview")
    assert "count 0" in cli.bad("jobs", "preview", "--every", "1s", "--count", "0")


def test_queues_status_and_keys_list_json_match_the_client(cli: Cli) -> None:
    job_id = cli.json("jobs", "add", "t", "--every", "1h", "--queue", "mail")["id"]
    cli.ok("jobs", "run-now", job_id)
    queues = cli.json("queues")
    assert queues == msgspec.to_builtins(cli.client(lambda c: c.queues()))
    mail = next(q for q in queues if q["name"] == "mail")
    assert mail["depth"] == 1 and mail["per_min"] == 1 and mail["pending"] == 0
    assert "mail" in cli.ok("queues").stdout
    status = cli.json("status")
    assert status["due"] == 1 and status["queues"]["mail"] == 1
    assert status["shards"] == [{"shard": i, "owner": None, "ttl_ms": None} for i in range(4)]
    assert status["workers_alive"] == 0 and status["schedulers_alive"] == 0
    assert "shard leases" in cli.ok("status").stdout
    cli.ok("keys", "create", "acme", "--role", "read", "--name", "ci")
    [key] = cli.json("keys", "list")
    assert (key["tenant"], key["role"], key["name"], key["revoked_ms"]) == (
        "acme", "read", "ci", None) and "sha256" not in key


def test_dlq_list_show_retry_purge(cli: Cli) -> None:
    ids = [cli.json("jobs", "add", "boom", "--every", "1h", "--max-attempts", "1", "--id",
                    f"j{i}")["id"] for i in range(3)]
    for job_id in ids + ids[:1]:
        cli.ok("jobs", "run-now", job_id)
    fail_runs(cli)
    listed = cli.json("dlq", "list")
    assert len(listed) == 4 and listed[0]["error"].endswith("it broke")
    assert listed == msgspec.to_builtins(cli.client(lambda c: c.find_dead(lambda d: True,
                                                                          50))[0])
    assert [d["job_id"] for d in cli.json("dlq", "list", "--job", "j1")] == ["j1"]
    assert cli.json("dead") == listed
    first = f"{listed[0]['entry_id']}~{listed[0]['job_id']}"
    assert cli.json("dlq", "show", first) == listed[0]
    assert "it broke" in cli.ok("dlq", "show", first).stdout
    # confirmation: refused leaves everything, accepted acts
    assert cli.run("dlq", "retry", first, input="n\n").exit_code == 1
    assert len(cli.json("dlq", "list")) == 4
    out = cli.ok("dlq", "retry", first, input="y\n").stdout
    assert "retried 1 dead letter(s)" in out and "run " in out
    assert len(cli.json("dlq", "list")) == 3
    j0 = [d for d in cli.json("dlq", "list") if d["job_id"] == "j0"]
    assert j0 and f"purged {len(j0)} dead letter(s)" in cli.ok("dlq", "purge", "--job", "j0",
                                                               "--yes").stdout
    assert "j0" not in {d["job_id"] for d in cli.json("dlq", "list")}
    cli.ok("jobs", "cancel", "j1")
    out = cli.ok("dlq", "retry", "--all", "--yes").stdout
    assert "skipped 1 (job cancelled or gone)" in out
    assert [d["job_id"] for d in cli.json("dlq", "list")] == ["j1"]
    assert "purged 1" in cli.ok("dlq", "purge", "--all", "-y").stdout
    assert cli.json("dlq", "list") == []


@pytest.mark.parametrize(("args", "message", "code"), [
    (["dlq", "retry"], "give one dead letter id, filters", 2),
    (["dlq", "purge", "--all", "--job", "x"], "give one dead letter id, filters", 2),
    (["dlq", "show", "garbage"], "dead letter id 'garbage': use <entry id>~<job id>", 2),
    (["dlq", "show", "1-0~nope"], "no dead letter '1-0~nope'", 1),
    (["dlq", "retry", "1-0~nope", "--yes"], "no dead letter '1-0~nope'", 1),
])
def test_dlq_bad_input(cli: Cli, args: list[str], message: str, code: int) -> None:
    assert message in cli.bad(*args, code=code)
