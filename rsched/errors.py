"""rsched's exception tree and the one table mapping Lua return codes to it.

Owns: exception classes and describe() (a failed run's error text).
Must not: import anything from rsched.

    RschedError
    ├── ConfigError, InvalidQueueName, ValidationError, SerializationError, ArchiveError
    ├── RoleCrashed    a role's component crashed or ended on its own (exit code 1)
    └── EngineError
        ├── JobNotFound (-1), InvalidTransition (-2), LeaseLost (-3), DuplicateJob (-4)
        └── ScriptError        unexpected reply / RSCHED_INVARIANT; carries .script
    handler control flow: Retry(delay_s=None), Fatal(reason)
"""

from __future__ import annotations

import traceback
from enum import IntEnum

ERROR_MAX = 2000  # characters of a run's error kept (the engine cuts there too)


class RschedError(Exception):
    """Base of every error rsched raises on purpose."""


class ConfigError(RschedError):
    pass


class ValidationError(RschedError, ValueError):
    """Bad user input: a schedule, a job definition or an argument."""


class InvalidQueueName(ValidationError):
    pass


class SerializationError(RschedError):
    pass


class ArchiveError(RschedError):
    pass


class RoleCrashed(RschedError):
    """A component of a running role crashed: the process exits non-zero."""


class EngineError(RschedError):
    def __init__(
        self, message: str, *, script: str = "", job_id: str = "", queue: str = ""
    ) -> None:
        super().__init__(message)
        self.script = script
        self.job_id = job_id
        self.queue = queue


class JobNotFound(EngineError):
    pass


class InvalidTransition(EngineError):
    pass


class LeaseLost(EngineError):
    pass


class DuplicateJob(EngineError):
    pass


class ScriptError(EngineError):
    pass


class Code(IntEnum):
    """Script result codes; lua/README.md lists which script returns which. Compare
    results with these names, never with bare integers."""

    OK = 0  # done; per item: start it, recorded, extended
    DONE = 1  # the one positive outcome: cancelled, paused, resumed, restored, claimed
    RETRYING = 1  # fail_run: the attempt failed, a retry is due
    ENDED = 2  # fail_run: the run ended (failed, dead, timed out)
    SIGNALLED = 2  # cancel_run: its worker was told to stop it; extend_runs: stop it
    DEFERRED = 3  # start_runs: a limit is full; the run waits in the due index
    RATE_LIMITED = 4  # take_queue_slots: over the queue's rate limit (deferred too)
    NOT_FOUND = -1
    WRONG_STATE = -2
    FENCED = -3  # lease or attempt superseded
    DUPLICATE = -4


# The one table from a refusal code to its exception.
CODES: dict[int, type[EngineError]] = {
    Code.NOT_FOUND: JobNotFound,
    Code.WRONG_STATE: InvalidTransition,
    Code.FENCED: LeaseLost,
    Code.DUPLICATE: DuplicateJob,
}


def raise_for_code(code: int, *, script: str, job_id: str = "", state: str = "") -> None:
    """Raise the exception a negative script return code stands for; ``state`` (the
    job's current state, read after a refusal) names why a transition was refused."""
    if code >= 0:
        return
    cls = CODES.get(code, ScriptError)
    what = _MEANING.get(code, f"unexpected reply {code}")
    if cls is InvalidTransition and state:
        what = f"is {state}: {_NEEDS.get(script, 'not a state that allows this')}"
    raise cls(f"{script.replace('_', ' ')}: job {job_id!r} {what}", script=script,
              job_id=job_id)


_MEANING: dict[int, str] = {
    Code.NOT_FOUND: "not found",
    Code.WRONG_STATE: "is not in a state that allows this (or its version changed)",
    Code.FENCED: "was taken over: lease or attempt superseded",
    Code.DUPLICATE: "already exists",
}

# Why a job in another state refuses a transition (the scripts' -2).
_NEEDS = {
    "pause_job": "only an active job can be paused",
    "resume_job": "only a paused job can be resumed",
    "cancel_job": "it was cancelled already",
    "run_now": "a cancelled job does not run",
}


class Retry(Exception):
    """Raised by a handler to ask for a retry, optionally after a fixed delay."""

    MAX_DELAY_S = 315_360_000.0  # 10 years: rsched.limits.MAX_DURATION_S (no import here)

    def __init__(self, delay_s: float | None = None, reason: str = "") -> None:
        if delay_s is not None and not 0 <= delay_s <= self.MAX_DELAY_S:  # also NaN
            raise ValueError(f"Retry(delay_s={delay_s!r}): must be within 0..10 years")
        super().__init__(reason or f"retry requested (delay {delay_s})")
        self.delay_s = delay_s
        self.reason = reason  # recorded as the attempt's error (default "retry requested")


class Fatal(Exception):
    """Raised by a handler for a failure no retry can fix: the run fails at once."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def describe(exc: BaseException, limit: int = ERROR_MAX) -> str:
    """A run's error: "Type: message" on the first line, then the traceback, cut in the
    middle to ``limit`` characters (its end names the frame that raised)."""
    head = f"{type(exc).__name__}: {exc}"[:500]
    trace = "".join(part if len(part) <= 500 else part[:500] + "...\n"  # a huge message
                    for part in traceback.format_exception(exc)).rstrip()
    room = limit - len(head) - 1
    if len(trace) > room:
        trace = "...\n" + trace[len(trace) - room + 4:]
    return f"{head}\n{trace}"
