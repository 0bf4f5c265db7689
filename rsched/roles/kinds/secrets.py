"""Secret values for a worker's HTTP and shell tasks, and scrubbing them from what it records.

Owns: reading secrets from the worker's environment (``RSCHED_SECRET_<NAME>``) and from
``worker.secrets_file`` (a JSON object or KEY=VALUE lines, re-read when it changes),
resolving a run's ``{"secret": "name"}`` references, and replacing every value a run
resolved with ``***`` in the text it produced (result excerpts, errors). Must not: log,
store or return a value anywhere but into the request or process that needs it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rsched.errors import ConfigError, Fatal
from rsched.task_kinds import Secret

ENV_PREFIX = "RSCHED_SECRET_"
MASK = "***"


class SecretStore:
    """The secrets one worker can resolve; names are case-insensitive."""

    def __init__(self, path: str | None, environ: Mapping[str, str] | None = None) -> None:
        self._path = Path(path) if path else None
        self._environ = os.environ if environ is None else environ
        self._file: dict[str, str] = {}
        self._mtime: float | None = None
        if self._path is not None:
            self._reload()  # a missing or malformed file stops the worker at start

    def get(self, name: str) -> str | None:
        value = self._environ.get(ENV_PREFIX + name.upper())
        if value is not None:
            return value
        if self._path is not None:
            try:
                self._reload()
            except ConfigError:
                pass  # keep the last good contents while the file is being rewritten
        return self._file.get(name.upper())

    def _reload(self) -> None:
        assert self._path is not None
        try:
            mtime = self._path.stat().st_mtime
            if mtime == self._mtime:
                return
            text = self._path.read_text()
        except OSError as exc:
            raise ConfigError(f"worker.secrets_file {self._path}: {exc.strerror}") from None
        self._file = {k.upper(): v for k, v in _parse(text, self._path).items()}
        self._mtime = mtime


def _parse(text: str, path: Path) -> dict[str, str]:
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"worker.secrets_file {path}: invalid JSON ({exc})") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ConfigError(f"worker.secrets_file {path}: an object of string values")
        return dict(data)
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"worker.secrets_file {path}:{n}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


class RunSecrets:
    """The secrets one run resolved, to take back out of everything it records."""

    def __init__(self, store: SecretStore) -> None:
        self._store = store
        self._values: set[str] = set()

    def value(self, v: str | Secret) -> str:
        if isinstance(v, str):
            return v
        return self._resolve(v.secret)

    def json(self, body: Any) -> Any:
        """A JSON body with every {"secret": "name"} object replaced by the value."""
        if isinstance(body, dict):
            if set(body) == {"secret"} and isinstance(body["secret"], str):
                return self._resolve(body["secret"])
            return {k: self.json(v) for k, v in body.items()}
        if isinstance(body, list):
            return [self.json(v) for v in body]
        return body

    def _resolve(self, name: str) -> str:
        value = self._store.get(name)
        if value is None:
            raise Fatal(f"secret {name!r} is not defined on this worker (set "
                        f"{ENV_PREFIX}{name.upper()} or worker.secrets_file)")
        if value:
            self._values.add(value)
        return value

    def scrub(self, text: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):
            text = text.replace(value, MASK)
        return text

    @property
    def longest(self) -> int:
        """The longest resolved value: how far a cut can split one."""
        return max(map(len, self._values), default=0)
