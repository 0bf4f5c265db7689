"""`rsched queue-limits QUEUE`: show or set a queue's queue-wide controls.

Owns: the options of the queue-wide concurrency limit, rate limit and default priority,
and their one-line errors. Must not: reach Redis but through the Client
(Client.set_queue_limits / queue_limits; docs/tasks.md, "Execution controls").
"""

from __future__ import annotations

from typing import Annotated

import msgspec
import typer

from rsched.cli.common import Json, RedisUrl, checked, fail, settings, with_client
from rsched.cli.output import show, table
from rsched.cli.parse import duration_s
from rsched.client import Client
from rsched.errors import ValidationError
from rsched.models import QueueLimits
from rsched.names import validate_queue

Opt = typer.Option


def queue_limits(
    queue: Annotated[str, typer.Argument(help="the queue")],
    concurrency: Annotated[int | None, Opt(help="runs of the queue at once, all workers")] = None,
    rate: Annotated[int | None, Opt(help="starts per --per, all workers")] = None,
    per: Annotated[str, Opt(help="the rate's period, e.g. 1s, 1m")] = "1s",
    burst: Annotated[int, Opt(help="starts the rate allows at once")] = 1,
    priority: Annotated[int | None, Opt(help="0-9: level of its jobs without one")] = None,
    clear: Annotated[bool, Opt("--clear", help="remove every limit")] = False,
    redis_url: RedisUrl = None, as_json: Json = False) -> None:
    """Show a queue's limits, or set them: `--concurrency 2`, `--rate 10 --per 1s`,
    `--priority 5` (every call replaces all of them; `--clear` removes them)."""
    checked(lambda: validate_queue(queue))
    wanted = {"concurrency": concurrency, "rate": rate, "priority": priority}
    changing = clear or any(v is not None for v in wanted.values())
    limits = None
    if changing:
        try:
            limits = msgspec.convert({k: v for k, v in wanted.items() if v is not None} | {
                "period_s": checked(lambda: duration_s(per, "--per")), "burst": burst},
                QueueLimits)
        except (msgspec.ValidationError, ValidationError) as exc:
            fail(f"queue-limits: {exc}")
        limits = QueueLimits() if clear else limits

    async def go(c: Client) -> QueueLimits:
        if limits is not None:
            await c.set_queue_limits(queue, limits)
        return await c.queue_limits(queue)

    got = with_client(settings(redis_url), go)
    show(got, as_json, lambda q: table(queue, ["CONCURRENCY", "RATE", "PER", "BURST",
                                               "DEFAULT PRIORITY"],
                                       [[q.concurrency or "-", q.rate or "-", q.period_s,
                                         q.burst, q.priority]]))
