"""Task kinds besides a Python function: an HTTP request and a shell command.

Owns: the stored Structs of each kind (``HttpTask``, ``ShellTask``), secret references
(``Secret``) and the checks made when a job is created (URL shape, header names, argv).
Must not: execute anything (rsched/roles/kinds/ does, on workers) or read secret values:
a job only ever holds a secret's *name*, so values never reach Redis or PostgreSQL.

Stored Structs evolve safely: new fields get defaults, types never change.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from rsched.errors import ValidationError

HTTP_TASK = "rsched.http"  # the task name of HTTP jobs (shown in listings, filters)
SHELL_TASK = "rsched.shell"  # the task name of shell jobs
BUILTIN_TASKS = frozenset({HTTP_TASK, SHELL_TASK})
MAX_URL = 2048
MAX_ITEMS = 64  # headers, query parameters, env variables, argv elements
SECRET_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")  # an HTTP header name (RFC 9110)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

Short = Annotated[str, msgspec.Meta(max_length=8192)]


class Secret(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A reference to a secret, ``{"secret": "name"}``: the worker resolves it when the
    run starts (RSCHED_SECRET_<NAME> or worker.secrets_file)."""

    secret: Annotated[str, msgspec.Meta(pattern=SECRET_NAME.pattern)]


Value = Short | Secret  # a header, raw body or env value: literal text or a secret


def secret_names(value: Any) -> list[str]:
    """Every secret a value (possibly nested JSON) references."""
    if isinstance(value, Secret):
        return [value.secret]
    if isinstance(value, dict):
        if set(value) == {"secret"} and isinstance(value["secret"], str):
            return [value["secret"]]
        return [n for v in value.values() for n in secret_names(v)]
    if isinstance(value, list):
        return [n for v in value for n in secret_names(v)]
    return []


def _check_secrets(value: Any, where: str) -> None:
    for name in secret_names(value):
        if not SECRET_NAME.match(name):
            raise ValidationError(f"{where}: secret name {name!r}: use 1-64 of [A-Za-z0-9_]")


class HttpTask(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One HTTP request per run. The job's ``timeout_s`` bounds the whole request."""

    url: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_URL)]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "GET"
    headers: Annotated[dict[str, Value], msgspec.Meta(max_length=MAX_ITEMS)] = {}
    query: Annotated[dict[str, Short], msgspec.Meta(max_length=MAX_ITEMS)] = {}
    json: Any = None  # a JSON body; {"secret": "name"} anywhere inside is resolved
    body: Value | None = None  # a raw body (text); exclusive with json
    success_codes: Annotated[list[Annotated[int, msgspec.Meta(ge=100, le=599)]],
                             msgspec.Meta(max_length=MAX_ITEMS)] = []  # [] = any 2xx
    follow_redirects: bool = False  # off: custom headers (secrets) never go to another host
    retry_4xx: bool = False  # retry other 4xx too (408 and 429 always retry)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValidationError(f"http.url {self.url!r}: must be an absolute http:// or "
                                  "https:// URL with a host")
        if any(c.isspace() for c in self.url):
            raise ValidationError(f"http.url {self.url!r}: must not contain whitespace")
        try:
            parts.port  # noqa: B018 - raises on a port out of range
        except ValueError as exc:
            raise ValidationError(f"http.url {self.url!r}: {exc}") from None
        for name in self.headers:
            if not _TOKEN.match(name):
                raise ValidationError(f"http.headers: invalid header name {name!r}")
        for name, value in self.headers.items():
            if isinstance(value, str) and ("\r" in value or "\n" in value):
                raise ValidationError(f"http.headers: {name}: line breaks are not allowed")
        if self.json is not None and self.body is not None:
            raise ValidationError("http: give json or body, not both")
        _check_secrets(self.json, "http.json")


class ShellTask(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One process per run, in its own process group (killed whole on timeout or
    cancel). ``argv`` is executed directly; with ``shell=True`` it must be one string,
    run by ``/bin/sh -c``. Only workers started with --allow-shell run these."""

    argv: Annotated[list[Annotated[str, msgspec.Meta(max_length=65536)]],
                    msgspec.Meta(min_length=1, max_length=4096)]
    shell: bool = False
    env: Annotated[dict[str, Value], msgspec.Meta(max_length=MAX_ITEMS)] = {}
    cwd: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)] | None = None

    def __post_init__(self) -> None:
        if not self.argv[0]:
            raise ValidationError("shell.argv: the program must not be empty")
        if self.shell and len(self.argv) != 1:
            raise ValidationError("shell.argv: with shell=true give one command line")
        for name in self.env:
            if not _ENV_NAME.match(name):
                raise ValidationError(f"shell.env: invalid variable name {name!r}")
            if name.startswith("RSCHED_"):
                raise ValidationError(f"shell.env: {name}: RSCHED_* variables are the "
                                      "worker's own")


def is_shell_queue(queue: str) -> bool:
    """Shell jobs go only to these queues, which only --allow-shell workers read."""
    return queue == "shell" or queue.startswith(("shell-", "shell.", "shell_"))
