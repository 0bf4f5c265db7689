"""Role processes for the engine benchmark, and their CPU time from /proc.

Owns: starting `rsched scheduler` / `rsched worker` processes with RSCHED_* settings,
stopping them, reading utime+stime of any pid. Must not: measure or judge results.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) * _TICK_S, int(rest[12]) * _TICK_S


def cpu_ns_s(pid: int) -> float:
    """CPU seconds of a process (all its live threads) at nanosecond resolution, from
    /proc/<pid>/task/*/schedstat (utime/stime tick at 10 ms: too coarse for idle CPU)."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return total / 1e9


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores (/proc/stat)."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks) - idle) * _TICK_S, sum(ticks) * _TICK_S


def settings_env(settings: dict[str, Any], extra: dict[str, str] | None = None
                 ) -> dict[str, str]:
    """The environment of a role: ours minus RSCHED_*, plus ``extra`` and the given dotted
    settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSCHED_")}
    env.update(extra or {})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    for dotted, value in settings.items():
        section, _, name = dotted.partition(".")
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        env[f"RSCHED_{section.upper()}__{name.upper()}"] = str(value)
    return env


@dataclass
class Roles:
    """Scheduler and worker processes on one deployment; ``stop`` reaps them all."""

    settings: dict[str, Any]
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)  # e.g. what the bench's tasks read
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def spawn(self, role: str, *args: str) -> None:
        name = f"{role}-{sum(1 for n in self.procs if n.startswith(role))}"
        with open(self.log_dir / f"{name}.log", "wb") as out:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-c", "from rsched.cli import main; main()", role,
                 "--log-level", os.environ.get("BENCH_LOG_LEVEL", "WARNING"), *args],
                env=settings_env(self.settings, self.env), stdout=out, stderr=subprocess.STDOUT,
                cwd=REPO)

    def pids(self, role: str) -> list[int]:
        return [p.pid for n, p in self.procs.items() if n.startswith(role)]

    def dead(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is not None]

    def cpu(self) -> dict[str, tuple[float, float]]:
        return {n: cpu_s(p.pid) for n, p in self.procs.items() if p.poll() is None}

    def stop(self, timeout_s: float = 15.0) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)

    def cpu_ns(self) -> dict[str, float]:
        return {n: cpu_ns_s(p.pid) for n, p in self.procs.items() if p.poll() is None}

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
                         for p in sorted(self.log_dir.glob("*.log")))
