"""What crosses the engine's boundary: the typed values its methods take and return, and
the parsing of Redis replies and stream entry ids into them.

Owns: DueItem, Fire, Delivery, Outcome, reply decoding helpers. Must not: talk to Redis
or know key names (the engine parts do).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from rsched.codec import decode_result
from rsched.engine.keys import RESUME_PREFIX, RETRY_PREFIX
from rsched.engine.schema import DEAD_LETTER, QUEUE_ENTRY, RUN
from rsched.models import DeadLetter, Run, RunStatus
from rsched.names import split_lane


@dataclass(frozen=True, slots=True)
class DueItem:
    member: str  # job id, or "r:<run id>" for a retry
    score: str  # exactly as read: the compare-and-set token for fire_due
    sched: bytes  # Trigger blob; b"" for retries
    slot: str = ""  # the job's unjittered next slot (its `next` field); "" = the score

    @property
    def is_retry(self) -> bool:
        """A retry or a timed resume: fire_due handles it alone (no trigger to decide)."""
        return self.member.startswith((RETRY_PREFIX, RESUME_PREFIX))

    @property
    def is_resume(self) -> bool:
        return self.member.startswith(RESUME_PREFIX)


@dataclass(frozen=True, slots=True)
class Fire:
    member: str
    read_score: str
    next_ms: int | None
    fire: bool = True
    skipped: int = 0
    slot_ms: int | None = None  # the slot fired when the due score is jittered
    next_slot_ms: int | None = None  # the next slot when next_ms is jittered


@dataclass(frozen=True, slots=True)
class Delivery:
    shard: int
    queue: str
    entry_id: str
    run_id: str
    job_id: str
    attempt: int
    slot_ms: int
    payload: bytes
    not_before_ms: int = 0  # fired ahead of time: the worker starts it at this time


@dataclass(frozen=True, slots=True)
class Outcome:
    run_id: str
    attempt: int
    status: RunStatus  # succeeded | cancelled
    result: str = ""


def text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def opt_int(v: Any) -> int | None:
    return int(v) if v not in (None, b"", "") else None


def job_of_run(run_id: str) -> str:
    return run_id.rsplit(":", 1)[0]


_RUN_ID, _JOB_ID, _ATT, _SLOT, _SPEC, _NB = (QUEUE_ENTRY.raw(n) for n in (
    "run_id", "job_id", "attempt", "slot_ms", "spec", "not_before_ms"))


def delivery(shard: int, queue: str, entry_id: Any, f: dict[bytes, bytes]) -> Delivery:
    """A queue entry as read by XREADGROUP (the hot path: direct lookups by the schema's
    wire names; entries written before the one spelling fall back to QUEUE_ENTRY.decode)."""
    if _ATT not in f:
        h = QUEUE_ENTRY.decode(f)
        return Delivery(shard, queue, text(entry_id), h["run_id"], h["job_id"], h["attempt"],
                        h["slot_ms"], h["spec"])
    nb = f.get(_NB)
    return Delivery(shard, queue, text(entry_id), f[_RUN_ID].decode(), f[_JOB_ID].decode(),
                    int(f[_ATT]), int(f[_SLOT]), f[_SPEC], int(nb) if nb else 0)


def parse_dead(entry_id: Any, fields: dict[Any, Any]) -> DeadLetter:
    return msgspec.convert({"error": "", **DEAD_LETTER.decode(fields),
                            "entry_id": text(entry_id)}, DeadLetter)


def parse_run(run_id: str, raw: dict[Any, Any]) -> Run:
    defaults = {"job_id": job_of_run(run_id), "queue": "", "tenant": "", "attempt": 1,
                "slot_ms": 0}
    fields = {**defaults, **RUN.decode(raw), "id": run_id}
    if "result" in fields:
        fields["result"] = decode_result(fields["result"])
    fields["queue"], fields["priority"] = split_lane(fields["queue"])  # its lane
    return msgspec.convert(fields, Run)


def pairs(flat: list[bytes] | None) -> dict[bytes, bytes]:
    it = iter(flat or ())
    return dict(zip(it, it))  # noqa: B905 (pairs: an even count by protocol)


def split_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def id_lt(a: str, b: str) -> bool:
    return split_id(a) < split_id(b)


def next_id(entry_id: str) -> str:
    ms, seq = split_id(entry_id)
    return f"{ms}-{seq + 1}"
