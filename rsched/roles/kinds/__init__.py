"""Executing the task kinds that are not Python functions: HTTP requests and shell commands.

Owns: choosing the kind of a run, refusing shell tasks on workers not started with
--allow-shell, the per-run secrets (resolved here, scrubbed from every error text that
leaves), and the worker's shared HTTP client's lifetime. Must not: record outcomes, talk
to Redis or run Python tasks (roles/task_call.py calls this for the other kinds).
"""

from __future__ import annotations

from typing import Any

from rsched.errors import Fatal, Retry
from rsched.models import JobSpec
from rsched.roles.kinds.http import HttpRunner
from rsched.roles.kinds.secrets import RunSecrets, SecretStore
from rsched.roles.kinds.shell import ShellRunner
from rsched.settings import WorkerSettings


def has_kind(spec: JobSpec) -> bool:
    """Whether the run is an HTTP or shell task (else a Python function)."""
    return spec.http is not None or spec.shell is not None


class TaskKinds:
    def __init__(self, cfg: WorkerSettings) -> None:
        self.allow_shell = cfg.allow_shell
        self.secrets = SecretStore(cfg.secrets_file)
        self.http = HttpRunner(cfg.http_max_connections)
        self.shell = ShellRunner(cfg.shell_term_grace_s)

    async def run(self, spec: JobSpec) -> dict[str, Any]:
        """The run's result; raises Retry, Fatal or TimeoutError with the secrets it
        resolved taken out of their text."""
        secrets = RunSecrets(self.secrets)
        try:
            if spec.http is not None:
                return await self.http.run(spec, spec.http, secrets)
            assert spec.shell is not None
            if not self.allow_shell:
                raise Fatal("shell task refused: this worker was not started with "
                            "--allow-shell (give shell jobs their own queue: docs/tasks.md)")
            return await self.shell.run(spec.shell, secrets)
        except (Retry, Fatal, TimeoutError):
            raise
        except Exception as exc:  # noqa: BLE001 - its text may hold a resolved secret
            raise Fatal(secrets.scrub(f"{type(exc).__name__}: {exc}")) from None

    async def aclose(self) -> None:
        await self.http.aclose()
