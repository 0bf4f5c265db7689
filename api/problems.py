"""Errors of the REST API as RFC 9457 problem+json, in one table.

Owns: ApiError, the exception-class -> status table, and turning any exception into a
problem response. Must not: log request bodies or leak internals in ``detail`` of a 500.
"""

from __future__ import annotations

import logging
import re

import msgspec
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.responses import Response

from api.schemas import Problem
from rsched.errors import (
    ConfigError,
    DuplicateJob,
    InvalidTransition,
    JobNotFound,
    RschedError,
    SerializationError,
    ValidationError,
)

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
_encoder = msgspec.json.Encoder()
_AT = re.compile(r"at `\$\.?([^`]*)`")
_NAMED = re.compile(r"(?:unknown|required) field `([^`]*)`")


class ApiError(Exception):
    """An HTTP error raised on purpose by an endpoint."""

    def __init__(self, status: int, title: str, detail: str = "", *, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.field = field
        self.headers = headers or {}


def not_found(what: str) -> ApiError:
    return ApiError(404, "Not Found", f"{what} not found")


# Exception class -> (status, title); the first match in order wins (subclasses first).
STATUS: list[tuple[type[BaseException], int, str]] = [
    (JobNotFound, 404, "Not Found"),
    (DuplicateJob, 409, "Conflict"),
    (InvalidTransition, 409, "Conflict"),
    (ValidationError, 422, "Unprocessable Content"),
    (SerializationError, 422, "Unprocessable Content"),
    (msgspec.ValidationError, 422, "Unprocessable Content"),
    (msgspec.DecodeError, 400, "Bad Request"),
    (ConfigError, 503, "Service Unavailable"),
    (RedisConnectionError, 503, "Service Unavailable"),
    (RedisTimeoutError, 503, "Service Unavailable"),
    (RschedError, 500, "Internal Server Error"),
]


def field_of(message: str) -> str | None:
    """The JSON path msgspec names in a validation error (``$.retry.max_attempts``)."""
    at = _AT.search(message)
    base = at.group(1) if at else ""
    named = _NAMED.search(message)
    if named:
        return f"{base}.{named.group(1)}" if base else named.group(1)
    return base or None


def problem(exc: BaseException, instance: str | None = None) -> Response:
    if isinstance(exc, ApiError):
        body = Problem(title=exc.title, status=exc.status, detail=exc.detail, field=exc.field,
                       instance=instance)
        return _response(body, exc.headers)
    for cls, status, title in STATUS:
        if isinstance(exc, cls):
            if status >= 500 and status != 503:
                break
            detail = str(exc) if status < 500 else "a backing service is unreachable"
            if isinstance(exc, JobNotFound):
                detail = "job not found"  # the engine's message names the script
            return _response(Problem(title=title, status=status, detail=detail,
                                     field=field_of(str(exc)), instance=instance), {})
    log.error("unhandled error on %s", instance, exc_info=exc)
    return _response(Problem(title="Internal Server Error", status=500,
                             detail="unexpected error; see the server log",
                             instance=instance), {})


def _response(body: Problem, headers: dict[str, str]) -> Response:
    return Response(_encoder.encode(body), status_code=body.status, headers=headers,
                    media_type=PROBLEM_JSON)
