"""What the benchmark's task variants need: their task names, the local HTTP server and
the environment the worker processes read (load/tasks.py).

Owns: starting and stopping ``load.httpd``, the BENCH_* environment. Must not: measure.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from load.procs import REPO

# --task value -> task name (load/tasks.py)
TASKS = {"noop": "bench.noop", "redis": "bench.redis", "http": "bench.http",
         "asleep": "bench.asleep", "sleep": "bench.sleep"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def task_env(task: str, redis_url: str, max_connections: int | None
             ) -> Iterator[tuple[dict[str, str], int | None]]:
    """(environment for the worker processes, pid of the HTTP server or None)."""
    env = {"BENCH_REDIS_URL": redis_url}
    if max_connections:
        env["BENCH_REDIS_MAX_CONNECTIONS"] = env["BENCH_HTTP_MAX_CONNECTIONS"] = str(
            max_connections)
    if task != "http":
        yield env, None
        return
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "load.httpd", str(port)], cwd=REPO,
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # "ready"
        env["BENCH_HTTP_URL"] = f"http://127.0.0.1:{port}"
        yield env, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)
