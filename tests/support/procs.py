"""Role subprocesses (`rsched worker`, `rsched scheduler`) for the chaos tests, `rsched`
commands run to completion, and polling.

Owns: running `rsched` commands, spawning roles with RSCHED_* settings in the environment,
signalling, reaping, their log files, and ``eventually`` (poll a condition with a
generous deadline instead of sleeping a fixed time). Must not: decide what a test asserts.

Every process a ``Roles`` starts is SIGKILLed and reaped when the test ends, so a
failing test never leaks a worker (nor a ResourceWarning, which the suite treats as an
error).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from rsched.engine import Engine

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")
# The `rsched` command line as a subprocess (no console script needed on the PATH).
RSCHED = [sys.executable, "-c", "from rsched.cli import main; main()"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``rsched <args>`` to completion; ``env`` adds to this process's environment."""
    return subprocess.run([*RSCHED, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


async def eventually(check: Callable[[], Awaitable[T]], what: str, timeout_s: float = 30.0,
                     interval_s: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` at the
    deadline. Deadlines are generous: they bound a hang, they do not measure speed."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(interval_s)


def sync_check(fn: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """Adapt a plain predicate (a file exists, a log line appeared) for ``eventually``."""

    async def check() -> T:
        return fn()

    return check


@dataclass
class Role:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def alive(self) -> bool:
        return self.proc.poll() is None

    async def wait_exit(self, timeout_s: float = 30.0) -> int:
        """Wait for the process to exit (without blocking the event loop); its code."""
        try:
            code = await eventually(lambda: _poll(self.proc), f"{self.name} to exit", timeout_s)
        except AssertionError as exc:  # say what it was doing
            raise AssertionError(f"{exc}; its log ends:\n{self.log()[-3000:]}") from None
        return int(code) - 1000

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a SIGSTOPped process must still die
            self.proc.kill()
        self.proc.wait(timeout=10)


async def _poll(proc: subprocess.Popen[bytes]) -> int | None:
    code = proc.poll()
    return None if code is None else code + 1000  # 0 is a valid (truthy-encoded) code


class Roles:
    """Starts rsched roles against one Redis URL and key prefix; reaps them at close()."""

    def __init__(self, redis_url: str, prefix: str, shards: int, log_dir: Path) -> None:
        self.redis_url, self.prefix, self.shards = redis_url, prefix, shards
        self.log_dir = log_dir
        self.started: list[Role] = []

    def env(self, settings: dict[str, Any]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RSCHED_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        base = {"redis.url": self.redis_url, "redis.prefix": self.prefix,
                "redis.shards": self.shards}
        for dotted, value in (base | settings).items():
            section, _, field = dotted.partition(".")
            if isinstance(value, list | tuple):
                value = ",".join(str(v) for v in value)
            env[f"RSCHED_{section.upper()}__{field.upper()}"] = str(value)
        return env

    def spawn(self, role: str, **settings: Any) -> Role:
        """Start ``rsched <role>``; settings are dotted names, e.g. worker__lease_s=1.5
        is passed as RSCHED_WORKER__LEASE_S (double underscore separates the section)."""
        dotted = {k.replace("__", ".", 1): v for k, v in settings.items()}
        n = len(self.started)
        log_path = self.log_dir / f"{role}-{n}.log"
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(
                [*RSCHED, role,
                 "--log-level", "INFO"],
                env=self.env(dotted), cwd=self.log_dir, stdout=out, stderr=subprocess.STDOUT)
        r = Role(f"{role}-{n} (pid {proc.pid})", proc, log_path)
        self.started.append(r)
        return r

    def close(self) -> None:
        for r in self.started:
            r.kill()


async def worker_ready(engine: Engine, role: Role, timeout_s: float = 30.0) -> str:
    """Wait until the worker process has heartbeaten; returns its worker id."""

    async def check() -> str | None:
        if not role.alive():
            raise AssertionError(f"{role.name} exited early:\n{role.log()}")
        for member in await engine.core.redis.zrange(engine.core.global_keys.workers, 0, -1):
            wid = member.decode()
            if f"-{role.pid}-" in wid:
                return wid
        return None

    return await eventually(check, f"{role.name} to heartbeat", timeout_s)


def watch_until(proc: subprocess.Popen[str], done: Callable[[list[str]], bool],
                timeout_s: float = 60) -> tuple[list[str], str]:
    """Read a process' output lines until ``done(lines)`` or ``timeout_s``, then Ctrl-C
    its session; returns (the lines read, the rest of its output)."""
    lines: list[str] = []
    try:
        deadline = time.monotonic() + timeout_s
        assert proc.stdout is not None
        while time.monotonic() < deadline and not done(lines):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    return lines, rest
