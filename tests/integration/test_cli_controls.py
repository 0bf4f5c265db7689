"""The execution controls and completion webhooks through `rsched jobs add/update`,
`jobs pause --until` and `export | apply` (in-process against a real redis-server)."""

from __future__ import annotations

import json

import pytest
import yaml

from rsched.models import HookOn, JobState, Webhook
from tests.support.cli import Cli

CONTROLS = ("--fire-jitter", "2m", "--max-runs", "7", "--concurrency", "2",
            "--unique-key", "invoice-4711", "--webhook", "https://hooks.example.com/r",
            "--webhook-on", "failure", "--webhook-secret", "HOOK_KEY")


@pytest.fixture
def cli(redis_url: str) -> Cli:
    return Cli(redis_url)


def test_add_update_export_apply_round_trip(cli: Cli) -> None:
    added = cli.json("jobs", "add", "t", "--every", "1m", "--name", "billing", *CONTROLS)
    d = cli.client(lambda c: c.get(added["id"])).definition()
    assert (d.jitter_s, d.max_runs, d.concurrency, d.unique_key) == (120.0, 7, 2,
                                                                     "invoice-4711")
    assert d.webhook == Webhook(url="https://hooks.example.com/r", on=HookOn.FAILURE,
                                secret="HOOK_KEY")
    same = cli.json("jobs", "add", "t", "--now", "--unique-key", "invoice-4711")
    assert same["id"] == added["id"]  # the key's holder

    exported = cli.ok("export").stdout
    [job] = yaml.safe_load(exported)["jobs"]
    assert {k: job[k] for k in ("jitter", "max_runs", "concurrency", "unique_key")} == {
        "jitter": "2m", "max_runs": 7, "concurrency": 2, "unique_key": "invoice-4711"}
    assert job["webhook"] == {"url": "https://hooks.example.com/r", "on": "failure",
                              "secret": "HOOK_KEY"}
    plan = json.loads(cli.ok("apply", "-f", "-", "--dry-run", "--json",
                             input=exported).stdout)["plan"]
    assert plan["update"] == [] and plan["create"] == [] and plan["unchanged"] == ["billing"]

    cli.ok("jobs", "update", added["id"], "--max-runs", "0", "--webhook-on", "always",
           "--concurrency", "3")
    d = cli.client(lambda c: c.get(added["id"])).definition()
    assert (d.max_runs, d.concurrency) == (None, 3)
    assert d.webhook is not None and (d.webhook.on, d.webhook.secret) == (HookOn.ALWAYS,
                                                                          "HOOK_KEY")
    plan = json.loads(cli.ok("apply", "-f", "-", "--json", input=exported).stdout)["plan"]
    [update] = plan["update"]
    assert set(update["changes"]) == {"max_runs", "concurrency", "webhook"}
    d = cli.client(lambda c: c.get(added["id"])).definition()
    assert (d.max_runs, d.concurrency, d.webhook and d.webhook.on) == (7, 2, HookOn.FAILURE)
    cli.ok("jobs", "update", added["id"], "--webhook", "none")
    assert cli.client(lambda c: c.get(added["id"])).webhook is None


def test_pause_until_an_instant(cli: Cli) -> None:
    job = cli.json("jobs", "add", "t", "--every", "1m")
    out = cli.ok("jobs", "pause", job["id"], "--until", "2031-01-01T00:00Z").stdout
    assert out.strip() == f"pause {job['id']}: ok (until 2031-01-01T00:00:00Z)"
    got = cli.client(lambda c: c.get(job["id"]))
    assert got.state is JobState.PAUSED and got.paused_until_ms == 1_924_992_000_000


@pytest.mark.parametrize("args", [
    ("--max-runs", "-1"), ("--concurrency", "-2"), ("--fire-jitter", "2y"),
    ("--webhook", "ftp://x"), ("--webhook-on", "failure"),
    ("--webhook", "https://x.example.com", "--webhook-secret", "not a name"),
])
def test_bad_control_values_exit_2_with_one_line(cli: Cli, args: tuple[str, ...]) -> None:
    cli.bad("jobs", "add", "t", "--every", "1m", *args)


def test_pause_until_the_past_exits_2(cli: Cli) -> None:
    job = cli.json("jobs", "add", "t", "--every", "1m")
    cli.bad("jobs", "pause", job["id"], "--until", "2001-01-01T00:00Z")
