"""rsched's exception tree and the one table mapping Lua return codes to it.

Owns: exception classes. Must not: import anything from rsched.

    RschedError
    ├── ConfigError, InvalidQueueName, ValidationError, SerializationError, ArchiveError
    ├── RoleCrashed    a role's component crashed or ended on its own (exit code 1)
    └── EngineError
        ├── JobNotFound (-1), InvalidTransition (-2), LeaseLost (-3), DuplicateJob (-4)
        └── ScriptError        unexpected reply / RSCHED_INVARIANT; carries .script
    handler control flow: Retry(delay_s=None), Fatal(reason)
"""

from __future__ import annotations


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


# Return codes shared by every script (lua/README.md lists them).
OK = 0
CODES: dict[int, type[EngineError]] = {
    -1: JobNotFound,
    -2: InvalidTransition,
    -3: LeaseLost,
    -4: DuplicateJob,
}


def raise_for_code(code: int, *, script: str, job_id: str = "") -> None:
    """Raise the exception a negative script return code stands for."""
    if code >= 0:
        return
    cls = CODES.get(code, ScriptError)
    what = _MEANING.get(code, f"unexpected reply {code}")
    raise cls(f"{script.replace('_', ' ')}: job {job_id!r} {what}", script=script,
              job_id=job_id)


_MEANING = {
    -1: "not found",
    -2: "is not in a state that allows this (or its version changed)",
    -3: "was taken over: lease or attempt superseded",
    -4: "already exists",
}


class Retry(Exception):
    """Raised by a handler to ask for a retry, optionally after a fixed delay."""

    def __init__(self, delay_s: float | None = None) -> None:
        super().__init__(f"retry requested (delay {delay_s})")
        self.delay_s = delay_s


class Fatal(Exception):
    """Raised by a handler for a failure no retry can fix: the run fails at once."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
