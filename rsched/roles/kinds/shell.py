"""Shell tasks: one process per run, in a process group of its own.

Owns: starting the process (argv, or ``/bin/sh -c`` when asked; env with secrets
resolved; cwd), keeping capped tails of stdout and stderr, and ending the whole group:
on timeout, cancel, a lost lease or shutdown (SIGTERM, then SIGKILL after
worker.shell_term_grace_s), and after the main process exits (SIGKILL to whatever it
left behind), so no process of a run outlives it. Must not: record outcomes or pass the
worker's own RSCHED_* variables (Redis URLs, secrets) to the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from typing import Any

from rsched.errors import Fatal, Retry
from rsched.roles.kinds.secrets import RunSecrets
from rsched.task_kinds import ShellTask

TAIL = 4096  # characters of stdout and of stderr kept on the run
_READ_AFTER_EXIT_S = 1.0  # a process that left the group may hold the pipes open


class ShellRunner:
    def __init__(self, term_grace_s: float) -> None:
        self.term_grace_s = term_grace_s

    async def run(self, task: ShellTask, secrets: RunSecrets) -> dict[str, Any]:
        argv = ["/bin/sh", "-c", task.argv[0]] if task.shell else list(task.argv)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RSCHED_")}
        env.update({k: secrets.value(v) for k, v in task.env.items()})
        started = time.monotonic()
        try:
            proc, exited = await _spawn(argv, env, task.cwd)
        except OSError as exc:  # no such program or directory, not executable
            raise Fatal(secrets.scrub(f"cannot start {argv[0]!r}: {exc}")) from None
        keep = TAIL + secrets.longest
        assert proc.stdout is not None and proc.stderr is not None
        readers = asyncio.gather(_tail(proc.stdout, keep), _tail(proc.stderr, keep))
        try:
            exit_code = await asyncio.shield(exited)
        except BaseException:  # cancelled: timeout, cancel, lost lease, shutdown
            await self._terminate(proc.pid, exited)
            raise
        finally:
            _signal_group(proc.pid, signal.SIGKILL)  # what the process left behind
            out, err = await _collect(readers)
        result: dict[str, Any] = {
            "exit_code": exit_code, "duration_ms": round((time.monotonic() - started) * 1000),
            "stdout": _text(out, secrets), "stderr": _text(err, secrets)}
        if exit_code:
            what = (f"killed by signal {-exit_code}" if exit_code < 0
                    else f"exit code {exit_code}")
            tail = result["stderr"][-1500:].strip()
            raise Retry(reason=f"{what}; stderr: {tail}" if tail else what)
        return result

    async def _terminate(self, pgid: int, exited: asyncio.Future[int]) -> None:
        _signal_group(pgid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(exited), self.term_grace_s)
        except TimeoutError:
            _signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(exited), 5.0)


class _Protocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Tells when the process exits, not when its pipes close: Process.wait() waits for
    both, and a child left in the background holds the pipes open."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=2**16, loop=loop)
        self.exited: asyncio.Future[int] = loop.create_future()
        self._process: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self._process = transport
        super().connection_made(transport)

    def process_exited(self) -> None:
        super().process_exited()
        code = None if self._process is None else self._process.get_returncode()
        if not self.exited.done() and code is not None:
            self.exited.set_result(code)


async def _spawn(argv: list[str], env: dict[str, str], cwd: str | None
                 ) -> tuple[asyncio.subprocess.Process, asyncio.Future[int]]:
    loop = asyncio.get_running_loop()
    pipe = asyncio.subprocess.PIPE
    transport, protocol = await loop.subprocess_exec(
        lambda: _Protocol(loop), *argv, stdin=asyncio.subprocess.DEVNULL, stdout=pipe,
        stderr=pipe, cwd=cwd, env=env, start_new_session=True)
    return asyncio.subprocess.Process(transport, protocol, loop), protocol.exited


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _tail(stream: asyncio.StreamReader, keep: int) -> bytes:
    buf = bytearray()
    while chunk := await stream.read(65536):
        buf += chunk
        if len(buf) > keep:
            del buf[:-keep]
    return bytes(buf)


async def _collect(readers: asyncio.Future[tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
    try:
        out, err = await asyncio.wait_for(asyncio.shield(readers), _READ_AFTER_EXIT_S)
    except TimeoutError:  # a process that escaped the group (setsid) holds a pipe
        return b"", b""
    finally:
        if not readers.done():
            readers.cancel()
    return out, err


def _text(raw: bytes, secrets: RunSecrets) -> str:
    """The last TAIL characters, scrubbed before the cut so no cut splits a secret."""
    text = secrets.scrub(raw.decode(errors="replace"))
    return text[-TAIL:]
