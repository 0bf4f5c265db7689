"""Operations: `rsched status`, `queues`, `dlq list|show|retry|purge` (and `dead`).

Owns: what an operator watches (shard leases, live roles, lag, queue figures) and acts on
(dead letters: one by id, by filter, or all, confirmed unless --yes). Must not: reach
Redis but through the Client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from rsched.cli.common import (
    EXIT_FAILED,
    Json,
    Limit,
    RedisUrl,
    Yes,
    checked,
    fail,
    settings,
    with_client,
)
from rsched.cli.output import age, builtins, confirm, progress, show, table, when
from rsched.client import DEAD_SCAN_MAX, Client
from rsched.models import DeadLetter
from rsched.settings import Settings

dlq_app = typer.Typer(help="Dead letters: runs whose attempts ran out", no_args_is_help=True,
                      rich_markup_mode="markdown")
BULK = 1000  # dead letters acted on per round trip batch


def status(redis_url: RedisUrl = None, as_json: Json = False) -> None:
    """The deployment at a glance: shard leases, live schedulers and workers (ms since
    their last heartbeat), jobs due, queue and events stream lengths, archive lag."""
    s = settings(redis_url)

    async def go(c: Client) -> dict[str, Any]:
        st, leases = await c.status(), await c.shard_leases()
        doc: dict[str, Any] = builtins(st)
        doc["shards"] = builtins(leases)
        doc["workers_alive"] = sum(ms <= _live_ms(s, "worker") for ms in st.workers.values())
        doc["schedulers_alive"] = sum(ms <= _live_ms(s, "scheduler")
                                      for ms in st.schedulers.values())
        return doc

    show(with_client(s, go), as_json, _render_status)


def _live_ms(s: Settings, role: str) -> float:
    """A role is alive while its last heartbeat is younger than three of its periods."""
    return 3000 * (s.worker.heartbeat_s if role == "worker" else s.scheduler.lease_s)


def _render_status(d: dict[str, Any]) -> None:
    held = sum(1 for sh in d["shards"] if sh["owner"])
    table("rsched", ["NOW", "JOBS DUE", "EVENTS", "ARCHIVE LAG", "SHARDS HELD", "SCHEDULERS",
                     "WORKERS"],
          [[when(d["now_ms"]), d["due"], d["events"], age(d["archive_lag_ms"]),
            f"{held}/{len(d['shards'])}", d["schedulers_alive"], d["workers_alive"]]])
    table("shard leases", ["SHARD", "SCHEDULER", "LEASE LEFT"],
          [[sh["shard"], sh["owner"], age(sh["ttl_ms"])] for sh in d["shards"]])
    roles = [["scheduler", i, age(ms)] for i, ms in sorted(d["schedulers"].items())]
    roles += [["worker", i, age(ms)] for i, ms in sorted(d["workers"].items())]
    table("roles", ["ROLE", "ID", "LAST HEARTBEAT"], roles)


def queues(redis_url: RedisUrl = None, tenant: Annotated[str | None, typer.Option(
        help="only this tenant's queues")] = None, as_json: Json = False) -> None:
    """Each queue: depth (entries in its streams), pending (delivered, not acked), age of
    the oldest pending entry, entries added in the last minute."""
    figures = with_client(settings(redis_url), lambda c: c.queues(tenant))
    show(figures, as_json, lambda fs: table(None, [
        "QUEUE", "DEPTH", "PENDING", "OLDEST PENDING", "PER MIN"],
        [[f.name, f.depth, f.pending, age(f.oldest_age_ms), f.per_min] for f in fs]))


def _render_dead(letters: list[DeadLetter]) -> None:
    table(None, ["ID", "RUN", "QUEUE", "STATUS", "ATTEMPT", "AT", "ERROR"],
          [[dead_id(d), d.run_id, d.queue, d.status, d.attempt, when(d.at_ms),
            d.error.splitlines()[0][:80] if d.error else ""] for d in letters])


def dead_id(d: DeadLetter) -> str:
    return f"{d.entry_id}~{d.job_id}"


JobF = Annotated[str | None, typer.Option("--job", help="only this job's dead letters")]
QueueF = Annotated[str | None, typer.Option("--queue", help="only this queue's")]
ErrorF = Annotated[str | None, typer.Option("--error", help="only those whose error contains")]


def _matcher(job: str | None, queue: str | None, error: str | None
             ) -> Callable[[DeadLetter], bool]:
    return lambda d: ((job is None or d.job_id == job) and (queue is None or d.queue == queue)
                      and (error is None or error in d.error))


@dlq_app.command("list")
def dlq_list(redis_url: RedisUrl = None, job: JobF = None, queue: QueueF = None,
             error: ErrorF = None, limit: Limit = 50, before: Annotated[str, typer.Option(
                 help="older than this entry id (the last one listed)")] = "",
             as_json: Json = False) -> None:
    """List dead letters, newest first (filters combine)."""
    items, _ = with_client(settings(redis_url),
                           lambda c: c.find_dead(_matcher(job, queue, error), limit, before))
    show(items, as_json, _render_dead)


@dlq_app.command("show")
def dlq_show(dead_letter: Annotated[str, typer.Argument(help="id as listed: <entry>~<job>")],
             redis_url: RedisUrl = None, as_json: Json = False) -> None:
    """One dead letter with its whole error."""
    d = with_client(settings(redis_url), lambda c: c.get_dead(dead_letter))
    if d is None:
        fail(f"no dead letter {dead_letter!r}", EXIT_FAILED)
    show(d, as_json, _render_one_dead)


def _render_one_dead(d: DeadLetter) -> None:
    _render_dead([d])
    typer.echo(d.error)


def _select(c: Client, one: str | None, every: bool, match: Callable[[DeadLetter], bool]
            ) -> Any:
    async def go() -> list[DeadLetter]:
        if one is not None:
            d = await c.get_dead(one)
            if d is None:
                fail(f"no dead letter {one!r}", EXIT_FAILED)
            return [d]
        found, _ = await c.find_dead(match, DEAD_SCAN_MAX)
        return found

    return go()


def _bulk(verb: str, one: str | None, every: bool, job: str | None, queue: str | None,
          error: str | None, yes: bool, redis_url: str | None) -> tuple[int, list[str], int]:
    filtered = any(v is not None for v in (job, queue, error))
    if sum([one is not None, every, filtered]) != 1:
        fail(f"dlq {verb}: give one dead letter id, filters (--job, --queue, --error) or --all")
    s, match = settings(redis_url), _matcher(job, queue, error)
    if one is not None:
        checked(lambda: Client.check_dead_id(one))
    letters = with_client(s, lambda c: _select(c, one, every, match))
    if not letters:
        return 0, [], 0
    confirm(f"{verb} {len(letters)} dead letter(s)?", yes)

    async def act(c: Client) -> tuple[int, list[str], int]:
        n, skipped, runs = 0, 0, list[str]()
        with progress(len(letters), f"{verb} dead letters") as advance:
            for i in range(0, len(letters), BULK):
                chunk = letters[i:i + BULK]
                if verb == "retry":
                    ids, skip = await c.retry_dead(chunk)
                    runs, skipped, n = runs + ids, skipped + skip, n + len(ids)
                else:
                    n += await c.purge_dead(chunk)
                advance(len(chunk))
        return n, runs, skipped

    return with_client(s, act)


One = Annotated[str | None, typer.Argument(help="a dead letter id; or use filters / --all")]
All = Annotated[bool, typer.Option("--all", help="every dead letter")]


@dlq_app.command("retry")
def dlq_retry(dead_letter: One = None, every: All = False, job: JobF = None,
              queue: QueueF = None, error: ErrorF = None, yes: Yes = False,
              redis_url: RedisUrl = None) -> None:
    """Run the jobs of dead letters again (a fresh run, attempts from 1); retried ones
    leave the dead letters, those whose job is cancelled or gone stay."""
    n, runs, skipped = _bulk("retry", dead_letter, every, job, queue, error, yes, redis_url)
    typer.echo(f"retried {n} dead letter(s)" + (f", skipped {skipped} (job cancelled or"
                                                  " gone)" if skipped else ""))
    for run_id in runs:
        typer.echo(f"  run {run_id}")
    if dead_letter is not None and skipped:
        raise typer.Exit(EXIT_FAILED)


@dlq_app.command("purge")
def dlq_purge(dead_letter: One = None, every: All = False, job: JobF = None,
              queue: QueueF = None, error: ErrorF = None, yes: Yes = False,
              redis_url: RedisUrl = None) -> None:
    """Delete dead letters for good."""
    n, _, _ = _bulk("purge", dead_letter, every, job, queue, error, yes, redis_url)
    typer.echo(f"purged {n} dead letter(s)")


def dead(redis_url: RedisUrl = None, limit: Limit = 20, as_json: Json = False) -> None:
    """List dead-lettered runs, newest first (same as `rsched dlq list`)."""
    dlq_list(redis_url=redis_url, job=None, queue=None, error=None, limit=limit, before="",
             as_json=as_json)
