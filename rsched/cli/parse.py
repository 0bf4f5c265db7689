"""The CLI's (and job files') spellings of values: durations, instants, labels, JSON.

Owns: parsing `30s`, `5m`, `1h30m`, `250ms`, `1.5d` into seconds and formatting them back
(the shortest exact spelling), ISO 8601 instants to epoch ms and back (UTC), `k=v`
labels, JSON args/kwargs. Every error is a ValidationError naming what was given (the
CLI turns it into exit 2). Must not: know typer, Redis or jobs.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from rsched.errors import ValidationError
from rsched.limits import MAX_DURATION_S, MAX_TIME_MS

_UNITS_MS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")


def duration_s(text: str | float, what: str = "duration") -> float:
    """Seconds of ``30s``, ``5m``, ``1h30m``, ``250ms``, ``1.5d`` or a bare number of
    seconds; within 0 .. 10 years."""
    if isinstance(text, bool):
        raise ValidationError(f"{what} {text!r}: not a duration")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        seconds = _parse_units(text.strip().lower(), what)
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_DURATION_S:
        raise ValidationError(f"{what} {text!r}: must be within 0s .. 3650d")
    return seconds


def _parse_units(text: str, what: str) -> float:
    try:
        return float(text)  # a bare number: seconds
    except ValueError:
        pass
    parts = _PART.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValidationError(f"{what} {text!r}: use units d, h, m, s, ms (e.g. 30s, 5m,"
                              " 1h30m)")
    units = [u for _, u in parts]
    if len(set(units)) != len(units):
        raise ValidationError(f"{what} {text!r}: a unit appears twice")
    return sum(float(n) * _UNITS_MS[u] for n, u in parts) / 1000


def format_duration(seconds: float) -> str | float:
    """The shortest spelling ``duration_s`` reads back exactly (``1h30m``, ``250ms``);
    a number of seconds when no whole number of milliseconds is exact."""
    ms = round(seconds * 1000)
    if not math.isclose(ms, seconds * 1000, abs_tol=1e-6):
        return seconds
    if ms == 0:
        return "0s"
    out = []
    for unit, size in _UNITS_MS.items():
        n, ms = divmod(ms, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)


def every_ms(text: str | float) -> int:
    """An ``every`` interval in ms: at least 1 ms."""
    ms = round(duration_s(text, "interval") * 1000)
    if ms < 1:
        raise ValidationError(f"interval {text!r}: must be at least 1ms")
    return ms


def instant_ms(text: str, what: str = "time") -> int:
    """Epoch ms of an ISO 8601 instant (``2027-01-01T09:00+01:00``, ``...Z``); one
    without an offset is UTC."""
    try:
        t = datetime.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        raise ValidationError(f"{what} {text!r}: not an ISO 8601 time (e.g."
                              " 2027-01-01T09:00+01:00)") from None
    ms = int((t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp() * 1000)
    if not 0 <= ms <= MAX_TIME_MS:
        raise ValidationError(f"{what} {text!r}: must be within 1970 .. 9999")
    return ms


def iso(ms: int | None) -> str | None:
    """An epoch-ms instant as ISO 8601 in UTC (milliseconds only when there are some)."""
    if ms is None:
        return None
    t = datetime.fromtimestamp(ms / 1000, UTC)
    return t.isoformat(timespec="milliseconds" if ms % 1000 else "seconds").replace(
        "+00:00", "Z")


def labels(items: list[str] | None) -> dict[str, str]:
    """``k=v`` items as a dict (a later item wins)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValidationError(f"label {item!r}: use key=value")
        out[key] = value
    return out


def json_value(text: str, what: str, kind: type[list[Any]] | type[dict[str, Any]]) -> Any:
    """A JSON list (args) or object (kwargs)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{what}: not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, kind):
        raise ValidationError(f"{what}: must be a JSON {'list' if kind is list else 'object'}")
    return value
