"""`rsched queue-limits` in-process (CliRunner) against a real redis-server: set, show,
clear, and bad input (exit 2, one line)."""

from __future__ import annotations

import pytest

from rsched.models import QueueLimits
from tests.support.cli import Cli


@pytest.fixture
def cli(redis_url: str) -> Cli:
    return Cli(redis_url)


def test_queue_limits_are_set_shown_and_cleared(cli: Cli) -> None:
    got = cli.json("queue-limits", "mail", "--concurrency", "2", "--rate", "10", "--per",
                   "1m", "--priority", "3")
    assert got == {"concurrency": 2, "rate": 10, "period_s": 60.0, "priority": 3}
    assert cli.client(lambda c: c.queue_limits("mail")) == QueueLimits(
        concurrency=2, rate=10, period_s=60.0, priority=3)
    assert "mail" in cli.ok("queue-limits", "mail").stdout
    assert cli.json("queue-limits", "mail", "--clear") == {}


@pytest.mark.parametrize(("args", "message"), [
    (["bad queue!", "--concurrency", "1"], "invalid queue name"),
    (["mail", "--concurrency", "0"], "queue-limits: Expected `int` >= 1"),
    (["mail", "--priority", "10"], "queue-limits: Expected `int` <= 9"),
    (["mail", "--rate", "5", "--per", "soon"], "--per 'soon'")])
def test_bad_queue_limits_exit_2_with_one_line(cli: Cli, args: list[str],
                                               message: str) -> None:
    assert message in cli.bad("queue-limits", *args)
