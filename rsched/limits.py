"""The bounds of every user input: times, intervals, sizes, counts, names, cron fields.

Owns: the limit constants (docs/decisions.md, "Input limits") and the checks that need
neither a clock nor Redis. Must not: import anything from rsched but errors.

Why bounds at all: every stored time stays below 2**53 ms, so Lua (whose numbers are
doubles, formatted by Redis with %.17g) always writes it back as an integer, and every
instant converts to a ``datetime`` (year 9999 at most).
"""

from __future__ import annotations

import math

from rsched.errors import ValidationError

# 9999-12-31T23:59:59.999Z: the last instant a datetime (and ISO 8601) can show.
MAX_TIME_MS = 253_402_300_799_999
# Longest interval of an `every` schedule: 10 years of 365 days.
MAX_EVERY_MS = 10 * 365 * 86_400_000
# Longest duration in seconds a job may name (timeout, backoff, grace): 10 years.
MAX_DURATION_S = 10 * 365 * 86_400.0
# Largest backoff multiplier.
MAX_BACKOFF_FACTOR = 100.0
# Encoded size of a job's spec (task name, args, kwargs, retry policy): copied into every
# run's queue entry, so it is bounded like a message, not like a document.
MAX_SPEC_BYTES = 1 << 20
# Longest jitter window of a job: one day.
MAX_JITTER_MS = 86_400_000
# Largest count a job may name (max runs, concurrency).
MAX_COUNT = 1_000_000_000
# Length of a job's unique (idempotency) key.
MAX_UNIQUE_KEY = 200
# Lengths of names.
MAX_TASK_NAME = 200
MAX_URL = 2048  # a webhook URL
MAX_TENANT = 128
MAX_TZ_NAME = 64  # the longest IANA name is 32 characters
MAX_CRON_EXPR = 256
# Fire instants one preview may compute.
MAX_PREVIEW = 1000

# (lowest, highest) value of each field of a 6-field cron, seconds first.
_CRON_FIELDS = (("second", 0, 59), ("minute", 0, 59), ("hour", 0, 23),
                ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))


def check_cron_steps(expr: str) -> None:
    """Reject a step larger than its field's range (croniter reads `*/1000000000` as 0)."""
    fields = expr.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    for value, (name, lo, hi) in zip(fields, _CRON_FIELDS, strict=False):
        for part in value.split(","):
            _, slash, step = part.partition("/")
            if slash and not (step.isdigit() and 1 <= int(step) <= hi - lo + 1):
                raise ValidationError(f"cron {expr!r}: {name} step {step!r} must be within"
                                      f" 1..{hi - lo + 1}")


def every_ms_of_seconds(every_s: float) -> int:
    """An interval given in seconds (CLI) as `every_ms`, within 1 ms .. MAX_EVERY_MS."""
    if not math.isfinite(every_s) or not 0.001 <= every_s <= MAX_EVERY_MS / 1000:
        raise ValidationError(f"interval {every_s!r} s: must be within 0.001 .."
                              f" {MAX_EVERY_MS // 1000} s (10 years)")
    return round(every_s * 1000)


def check_count(count: int) -> None:
    if not 1 <= count <= MAX_PREVIEW:
        raise ValidationError(f"count {count}: must be within 1..{MAX_PREVIEW}")
