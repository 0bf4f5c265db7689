"""Words for people: schedules ("every day at 02:00 (Europe/Paris)"), instants and
durations, and the dashboard's run chart (inline SVG).

Owns: how the dashboard phrases schedules, times and durations, and draws runs. Must not:
compute fire times (rsched.timing does) or read anything.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
_DOW = {"1-5": "on weekdays", "0,6": "on weekends", "6,0": "on weekends", "*": ""}


def duration(ms: float | None) -> str:
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms:.0f} ms"
    s = int(ms // 1000)
    if s < 60:
        return f"{ms / 1000:.1f} s"
    for big, small, size, unit in (("d", "h", 86400, 3600), ("h", "min", 3600, 60),
                                   ("min", "s", 60, 1)):
        if s >= size:
            rest = (s % size) // unit
            return f"{s // size} {big}" + (f" {rest} {small}" if rest else "")
    return f"{s} s"


def every(ms: int) -> str:
    for unit, size in (("day", 86_400_000), ("hour", 3_600_000), ("minute", 60_000),
                       ("second", 1000)):
        if ms % size == 0:
            n = ms // size
            return f"every {unit}" if n == 1 else f"every {n} {unit}s"
    return f"every {ms} ms"


def _cron(expr: str) -> str | None:
    parts = expr.split()
    if len(parts) == 6:
        if parts[0] != "0":
            return None
        parts = parts[1:]
    if len(parts) != 5:
        return None
    minute, hour, dom, month, dow = parts
    if month != "*" or dom != "*" and dow != "*":
        return None
    if (minute, hour, dom, dow) == ("*", "*", "*", "*"):
        return "every minute"
    if minute.startswith("*/") and (hour, dom, dow) == ("*", "*", "*"):
        return f"every {minute[2:]} minutes"
    if not minute.isdigit():
        return None
    if hour == "*" and (dom, dow) == ("*", "*"):
        return f"every hour at minute {minute}"
    if not hour.isdigit():
        return None
    at = f"at {int(hour):02d}:{int(minute):02d}"
    if dom != "*":
        return f"{at} on day {dom} of every month" if dom.isdigit() else None
    if dow.isdigit() and int(dow) <= 7:
        return f"every {DAYS[int(dow) % 7]} {at}"
    days = _DOW.get(dow)
    return None if days is None else f"every day {at}" if not days else f"{at} {days}"


def schedule(s: Any) -> str:
    """A job's schedule (as JSON from the API) in words."""
    kind = s.get("type")
    if kind == "cron":
        words = _cron(s["expr"]) or f"cron {s['expr']}"
        return f"{words} ({s.get('tz', 'UTC')})"
    if kind == "every":
        return every(int(s["every_ms"]))
    if kind == "at":
        return f"once at {instant(s['at_ms'])}"
    return "once, as soon as possible"


def instant(ms: int | None) -> str:
    if ms is None:
        return "—"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def relative(ms: int | None, now_ms: int) -> str:
    if ms is None:
        return "—"
    delta = ms - now_ms
    words = duration(abs(delta))
    return "now" if abs(delta) < 1000 else f"in {words}" if delta > 0 else f"{words} ago"


COLOURS = {"succeeded": "#2e7d32", "failed": "#c62828", "dead": "#6a1b9a",
           "timed_out": "#ef6c00", "cancelled": "#757575", "retrying": "#f9a825",
           "running": "#1565c0", "queued": "#90a4ae"}


def chart(runs: list[dict[str, Any]], width: int = 640, height: int = 140) -> str:
    """Runs oldest to newest as bars: height = duration, colour = outcome."""
    if not runs:
        return '<p class="muted">No runs yet.</p>'
    runs = list(reversed(runs))
    took = [max(0, (r.get("finished_ms") or 0) - (r.get("started_ms") or 0))
            if r.get("finished_ms") and r.get("started_ms") else 0 for r in runs]
    top = max(max(took), 1)
    bar = width / len(runs)
    out = [f'<svg class="chart" viewBox="0 0 {width} {height + 16}" role="img" '
           f'aria-label="run durations and outcomes" width="100%">',
           f'<text x="2" y="10" class="axis">{escape(duration(top))}</text>']
    for i, (r, ms) in enumerate(zip(runs, took, strict=True)):
        h = max(2.0, (height - 14) * ms / top)
        colour = COLOURS.get(r["status"], "#999")
        title = escape(f"{r['id']}: {r['status']}, {duration(ms)}")
        out.append(f'<rect x="{i * bar + 1:.1f}" y="{height - h + 14:.1f}" '
                   f'width="{max(1.0, bar - 2):.1f}" height="{h:.1f}" fill="{colour}">'
                   f'<title>{title}</title></rect>')
    out.append("</svg>")
    return "".join(out)
