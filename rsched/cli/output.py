"""How `rsched` prints: rich tables for people, JSON for scripts, progress bars, prompts.

Owns: the stdout console (no colour and a wide, unwrapped layout when stdout is not a
terminal), the JSON spelling of models (msgspec builtins: the field names of
rsched.models, times as epoch ms), progress bars on stderr (only on a terminal) and the
confirmation prompt. Must not: talk to Redis or PostgreSQL.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import msgspec
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rsched.cli.common import EXIT_FAILED
from rsched.cli.parse import format_duration, iso


def console() -> Console:
    """A console on the current stdout (typer's test runner swaps it per call)."""
    tty = sys.stdout.isatty()
    return Console(file=sys.stdout, no_color=not tty, highlight=tty, soft_wrap=not tty,
                   width=None if tty else 200)


def builtins(obj: Any) -> Any:
    return msgspec.to_builtins(obj)


def emit_json(obj: Any) -> None:
    typer.echo(json.dumps(builtins(obj), indent=2, default=str))


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    t = Table(title=title, title_justify="left", show_edge=False, header_style="bold")
    for c in columns:
        t.add_column(c, overflow="fold")
    for row in rows:
        t.add_row(*(cell(v) for v in row))
    console().print(t)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(getattr(value, "value", value))


def when(ms: int | None) -> str:
    return iso(ms) or "-"


def age(ms: int | None) -> str:
    if ms is None:
        return "-"
    return str(format_duration(round(ms / 1000, 1) if ms >= 10_000 else ms / 1000))


def show(data: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    """Print ``data`` as JSON with --json, else as ``render`` draws it."""
    if as_json:
        emit_json(data)
    else:
        render(data)


@contextmanager
def progress(total: int, description: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr (a terminal only); yields ``advance(n)``."""
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=Console(stderr=True), transient=True,
                   disable=not sys.stderr.isatty())
    with bar:
        task = bar.add_task(description, total=total or None)

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        yield advance


def confirm(question: str, yes: bool) -> None:
    """Ask unless --yes; a refusal (or no terminal to ask on) exits 1."""
    if yes:
        return
    if not typer.confirm(question, default=False, err=True):
        typer.echo("aborted: nothing changed", err=True)
        raise typer.Exit(EXIT_FAILED)
