"""Example tasks used by `rsched dev` / `make run` and the docs."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from rsched.tasks import task

log = logging.getLogger(__name__)


@task(name="examples.hello")
async def hello(who: str = "world") -> str:
    line = f"hello, {who}! it is {datetime.now(UTC).isoformat(timespec='milliseconds')}"
    print(line, flush=True)
    return line


@task(name="examples.noop")
async def noop() -> None:
    return None


@task(name="examples.fail")
def fail(message: str = "boom") -> None:
    raise RuntimeError(message)
