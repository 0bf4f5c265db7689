"""The `rsched` command line (Typer): roles, job verbs, declarative apply/export,
operations and administration (docs/cli.md lists every command).

Owns: the app's tree of commands and ``main`` (the console entry point
``rsched = "rsched.cli:main"``). Must not: hold scheduling or execution logic; every
verb goes through the Client (or, for keys and rebuild, the Engine) the API uses.

    common.py   settings, exit codes, store sessions, shared options
    output.py   tables, JSON, progress bars, prompts
    parse.py    durations, instants, labels, JSON arguments
    roles.py    scheduler, worker, archiver, notifier, api, dev
    jobs.py     jobs add|update|list|show|runs|pause|resume|cancel|run-now|preview|history
    jobdef.py   the job options and the JobDef they build
    apply.py    apply, export (jobfile.py: the file format)
    ops.py      status, queues, dlq, dead
    queue_limits.py  queue-limits (queue-wide concurrency, rate, default priority)
    admin.py    migrate, retention, rebuild, keys
"""

from __future__ import annotations

import asyncio

import typer

from rsched.cli import admin, apply, jobs, ops, queue_limits, roles

app = typer.Typer(help="rsched: Redis-native distributed job scheduler", no_args_is_help=True,
                  rich_markup_mode="markdown")  # markdown: docstring lines reflow
for fn in (roles.scheduler, roles.worker, roles.archiver, roles.notifier, roles.api, roles.dev,
           apply.apply, apply.export, ops.status, ops.queues, ops.dead,
           admin.migrate, admin.retention, admin.rebuild, queue_limits.queue_limits):
    app.command()(fn)
app.add_typer(jobs.jobs_app, name="jobs")
app.add_typer(ops.dlq_app, name="dlq")
app.add_typer(admin.keys_app, name="keys")


def main() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is optional off Linux
        pass
    app(prog_name="rsched")
