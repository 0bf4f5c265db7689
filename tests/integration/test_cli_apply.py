"""`rsched apply` / `rsched export` in-process against a real redis-server: a second apply
changes nothing, `export | apply --dry-run` plans nothing, --prune cancels exactly the
named jobs no longer listed, unnamed jobs are never touched; and one real subprocess."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from rsched.models import Cron, Every, JobState
from tests.support.cli import Cli
from tests.support.procs import run_cli

FILE = """
jobs:
  - name: nightly
    task: reports.build
    cron: "0 3 * * *"
    tz: Europe/Berlin
    retry: {max_attempts: 5, backoff: 30s}
    labels: {team: data}
  - name: poll
    task: feeds.poll
    every: 90s
    queue: feeds
  - name: launch
    task: launch.go
    at: 2030-01-01T09:00+01:00
"""


@pytest.fixture
def cli(redis_url: str) -> Cli:
    return Cli(redis_url)


def _plan(cli: Cli, *args: str, text: str = FILE) -> dict[str, object]:
    out = cli.ok("apply", "-f", "-", "--json", *args, input=text)
    return dict(json.loads(out.stdout))


def test_apply_creates_then_a_second_apply_changes_nothing(cli: Cli) -> None:
    out = cli.ok("apply", "-f", "-", input=FILE).stdout
    assert "+ create nightly" in out and "plan: 3 to create, 0 to update" in out
    assert "applied 3 change(s)" in out
    named = cli.client(lambda c: c.named_jobs("default"))
    assert sorted(named) == ["launch", "nightly", "poll"]
    assert named["nightly"].trigger.schedule == Cron(expr="0 3 * * *", tz="Europe/Berlin")
    versions = {n: j.version for n, j in named.items()}
    again = _plan(cli)
    assert again["plan"] == {"create": [], "update": [], "cancel": {},
                             "unchanged": ["nightly", "poll", "launch"]}
    assert again["applied"] is None
    assert {n: j.version for n, j in cli.client(lambda c: c.named_jobs("default")).items()} \
        == versions


def test_apply_updates_only_what_changed_and_prints_the_fields(cli: Cli) -> None:
    cli.ok("apply", "-f", "-", input=FILE)
    changed = FILE.replace("every: 90s", "every: 2m").replace("backoff: 30s", "backoff: 1m")
    dry = cli.ok("apply", "-f", "-", "--dry-run", input=changed).stdout
    assert "every: '1m30s' -> '2m'" in dry and "retry.backoff: '30s' -> '1m'" in dry
    assert "plan: 0 to create, 2 to update, 0 to cancel, 1 unchanged" in dry
    assert "applied" not in dry
    assert cli.client(lambda c: c.named_jobs("default"))["poll"].version == 1, "dry run"
    cli.ok("apply", "-f", "-", input=changed)
    named = cli.client(lambda c: c.named_jobs("default"))
    assert (named["poll"].version, named["nightly"].version, named["launch"].version) == (2, 2, 1)
    assert named["poll"].definition().schedule.every_ms == 120_000  # type: ignore[union-attr]


def test_export_then_apply_dry_run_plans_nothing(cli: Cli, tmp_path: Path) -> None:
    cli.ok("apply", "-f", "-", input=FILE)
    cli.ok("jobs", "add", "t", "--every", "1h", "--name", "by-hand", "--timeout", "none",
           "--misfire", "catch_up", "--kwargs", '{"a": [1, 2]}', "--end",
           "2031-01-01T00:00:00.250Z")
    exported = cli.ok("export").stdout
    assert "by-hand" in exported and "2031-01-01T00:00:00.250Z" in exported
    plan = _plan(cli, "--dry-run", text=exported)["plan"]
    # in the export's order: by creation time, then id (one apply creates in one go)
    assert {**plan, "unchanged": sorted(plan["unchanged"])} == {
        "create": [], "update": [], "cancel": {},
        "unchanged": sorted(["nightly", "poll", "launch", "by-hand"])}
    path = tmp_path / "jobs.yaml"
    cli.ok("export", "-o", str(path))
    assert path.read_text() == exported
    assert "plan: 0 to create, 0 to update, 0 to cancel, 4 unchanged" in cli.ok(
        "apply", "-f", str(path), "--dry-run", "--prune").stdout


def test_prune_cancels_exactly_the_named_jobs_no_longer_listed(cli: Cli) -> None:
    cli.ok("apply", "-f", "-", input=FILE)
    unnamed = cli.json("jobs", "add", "t", "--every", "1h")["id"]
    other_tenant = cli.json("jobs", "add", "t", "--every", "1h", "--name", "poll",
                            "--tenant", "acme")["id"]
    shorter = FILE.split("  - name: poll")[0]
    kept = cli.ok("apply", "-f", "-", input=shorter).stdout
    assert "cancel" not in kept.replace("0 to cancel", ""), "without --prune nothing goes"
    plan = _plan(cli, "--prune", text=shorter)
    named = cli.client(lambda c: c.named_jobs("default"))
    assert sorted(plan["plan"]["cancel"]) == ["launch", "poll"]  # type: ignore[index]
    assert sorted(named) == ["nightly"]
    state = {j: cli.client(lambda c, j=j: c.get(j)).state for j in (unnamed, other_tenant)}
    assert state == {unnamed: JobState.ACTIVE, other_tenant: JobState.ACTIVE}
    assert _plan(cli, "--prune", text=shorter)["plan"]["cancel"] == {}  # type: ignore[index]
    # a cancelled job's name is free again: listing it again creates a new job
    assert _plan(cli, text=FILE)["plan"]["create"] == ["poll", "launch"]  # type: ignore[index]


@pytest.mark.parametrize(("text", "message"), [
    ("jobs: [{name: a, task: t, every: 1s, crn: x}]", "unknown field `crn` - at `$.jobs[0]`"),
    ("jobs: [{name: a, task: t}]", "give exactly one of cron, every, at, now"),
    ("jobs: [{name: a, task: t, cron: '61 * * * *'}]", "cron '61 * * * *'"),
    ("jobs: [{name: a, task: t, every: 1s, queue: 'a b'}]", "invalid queue name 'a b'"),
    ("jobs: [", "job file: not YAML"),
])
def test_a_bad_file_exits_2_and_changes_nothing(cli: Cli, text: str, message: str) -> None:
    assert message in cli.bad("apply", "-f", "-", input=text)
    assert cli.client(lambda c: c.named_jobs("default")) == {}


def test_a_missing_file_exits_2(cli: Cli, tmp_path: Path) -> None:
    assert "--file" in cli.bad("apply", "-f", str(tmp_path / "nope.yaml"))


def test_apply_and_export_as_real_subprocesses(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(FILE)
    out = run_cli("apply", "-f", str(path), env=cli.env)
    assert out.returncode == 0 and "applied 3 change(s)" in out.stdout, out.stderr
    exported = run_cli("export", env=cli.env)
    assert exported.returncode == 0 and "\x1b[" not in exported.stdout
    path.write_text(exported.stdout)
    dry = run_cli("apply", "-f", str(path), "--dry-run", "--prune", env=cli.env)
    assert "plan: 0 to create, 0 to update, 0 to cancel, 3 unchanged" in dry.stdout, dry
    down = run_cli("apply", "-f", str(path), env={**cli.env,
                                                  "RSCHED_REDIS__URL": "redis://127.0.0.1:1/0"})
    assert down.returncode == 3 and down.stderr.startswith("error: cannot reach Redis")
    assert down.stderr.count("\n") == 1


def test_dev_demo_seeds_its_jobs_by_name_once(cli: Cli) -> None:
    from rsched.cli.roles import seed_demo
    from rsched.settings import Settings

    s = Settings.from_env(cli.env)
    assert asyncio.run(seed_demo(s)) == ["demo-every-second", "demo-dead-letter", "demo-http"]
    first = cli.client(lambda c: c.named_jobs("default"))
    asyncio.run(seed_demo(s))  # a restart of `rsched dev --demo` adds no second copy
    again = cli.client(lambda c: c.named_jobs("default"))
    assert {n: (j.id, j.version) for n, j in again.items()} == \
        {n: (j.id, j.version) for n, j in first.items()}
    every, dead = again["demo-every-second"], again["demo-dead-letter"]
    assert every.spec.task == "examples.hello" and every.trigger.schedule == Every(every_ms=1000)
    assert dead.spec.task == "examples.fail" and dead.spec.retry.max_attempts == 2
    http = again["demo-http"]
    assert http.spec.http is not None and http.spec.http.url.endswith("/healthz")
    assert http.trigger.schedule == Cron(expr="*/10 * * * * *")
