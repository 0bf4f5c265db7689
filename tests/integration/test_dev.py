"""`rsched dev` on shared stores: says which it uses, keeps to its own namespace, manages
its example job across restarts, and imports task modules from the current directory."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

from rsched.client import Client
from rsched.devservers import free_port
from rsched.models import JobDef
from rsched.settings import Settings
from tests.support.procs import run_cli, watch_until

# `python -P`: no current directory on sys.path, as with the installed `rsched` script
# (`python -c` would put it there and hide a task module that does not import).
RSCHED_SCRIPT = [sys.executable, "-P", "-c", "from rsched.cli import main; main()"]


def run_dev(env: dict[str, str], until: str, times: int = 2, cwd: Path | None = None,
            args: tuple[str, ...] = ()) -> str:
    """Start `rsched dev`, wait until ``until`` was printed ``times`` times, Ctrl-C it;
    returns everything it printed. Fails on a traceback or a non-zero exit."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RSCHED_")}, **env}
    proc = subprocess.Popen([*RSCHED_SCRIPT, "dev", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd,
                            start_new_session=True)
    lines, rest = watch_until(proc, lambda lines: sum(until in ln for ln in lines) >= times)
    out = "".join(lines) + rest
    assert sum(until in ln for ln in lines) >= times, out
    assert proc.returncode == 0 and "Traceback" not in out, out
    return out


def _keys(redis_url: str, pattern: str, delete: bool = False) -> list[str]:
    client = redis.Redis.from_url(redis_url)
    try:
        keys = [k.decode() for k in client.scan_iter(match=pattern, count=1000)]
        if delete and keys:
            client.delete(*keys)
        return keys
    finally:
        client.close()


def test_dev_on_shared_stores_keeps_to_its_namespace_and_restarts_after_cancel(
        redis_url: str, archive_dsn: str) -> None:
    _keys(redis_url, "rsched-dev:*", delete=True)  # a session-wide server: start clean
    env = {"RSCHED_REDIS__URL": redis_url, "RSCHED_ARCHIVER__DSN": archive_dsn}
    default_keys = set(_keys(redis_url, "rsched:*"))  # other tests' default-prefix keys
    first = run_dev(env, "hello, rsched!")
    assert f"rsched dev: Redis: {redis_url} (shared), keys under rsched-dev:" in first, first
    assert "(shared), schema rsched_dev" in first, first
    assert "example job 'hello-every-second'" in first, first
    assert _keys(redis_url, "rsched-dev:*") and set(_keys(redis_url, "rsched:*")) == default_keys
    with psycopg.connect(archive_dsn) as conn:
        tables = conn.execute("SELECT count(*) FROM information_schema.tables"
                              " WHERE table_schema = 'rsched_dev'").fetchone()
    assert tables is not None and tables[0] > 0

    dev_env = {"RSCHED_REDIS__URL": redis_url, "RSCHED_REDIS__PREFIX": "rsched-dev"}
    cancel = run_cli("jobs", "cancel", "hello-every-second", env=dev_env)
    assert cancel.returncode == 0, cancel.stderr
    second = run_dev(env, "hello, rsched!")  # not blocked for a day by the cancelled one
    assert "example job 'hello-every-second-" in second, second
    third = run_dev(env, "hello, rsched!")  # reused, not duplicated
    listed = run_cli("jobs", "list", env=dev_env)
    assert listed.returncode == 0, listed.stderr
    examples = [i for i in listed.stdout.split() if i.startswith("hello-every-second")]
    assert len(examples) == 1 and f"example job '{examples[0]}'" in third, (listed, third)


def test_dev_imports_task_modules_from_the_current_directory(
        redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "mytasks.py").write_text(
        "from rsched.tasks import task\n\n"
        "@task(name='mytasks.ping')\n"
        "def ping(n: int) -> None:\n"
        "    print(f'pong {n}', flush=True)\n")
    (tmp_path / "envtasks.py").write_text("print('envtasks imported', flush=True)\n")
    prefix = f"dev{uuid.uuid4().hex[:8]}"  # a prefix the user set is kept
    env = {"RSCHED_REDIS__URL": redis_url, "RSCHED_REDIS__PREFIX": prefix,
           "RSCHED_WORKER__MODULES": "envtasks",
           "RSCHED_ARCHIVER__DSN": "postgresql://nobody@127.0.0.1:1/none"}

    async def schedule() -> None:
        client = await Client.connect(Settings.from_env(env))
        try:
            await client.schedule(JobDef(task="mytasks.ping", args=[7]))
        finally:
            await client.close()

    asyncio.run(schedule())
    out = run_dev(env, "pong 7", times=1, cwd=tmp_path, args=("--module", "mytasks"))
    assert f"keys under {prefix}:" in out and "envtasks imported" in out, out
    assert "task modules: rsched.examples, envtasks, mytasks" in out, out


def test_task_modules_import_from_cwd_without_pythonpath(
        tmp_path: Path, monkeypatch: Any) -> None:
    from rsched.tasks import TaskRegistry

    (tmp_path / "cwd_tasks_xyz.py").write_text("LOADED = True\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    TaskRegistry().import_modules(["cwd_tasks_xyz"])
    assert "cwd_tasks_xyz" in sys.modules
    monkeypatch.delitem(sys.modules, "cwd_tasks_xyz")


def test_dev_serves_the_dashboard_and_metrics_and_prints_its_url(redis_url: str) -> None:
    _keys(redis_url, "rsched-dev-ui:*", delete=True)
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RSCHED_")},
           "RSCHED_REDIS__URL": redis_url, "RSCHED_REDIS__PREFIX": "rsched-dev-ui",
           "RSCHED_ARCHIVER__DSN": "", "RSCHED_API__PORT": str(port)}
    proc = subprocess.Popen([*RSCHED_SCRIPT, "dev"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        while not any("dashboard and API" in ln for ln in lines):
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        url = f"http://127.0.0.1:{port}/"
        assert f"rsched dev: dashboard and API (dev mode, no keys): {url}" in lines[-1]
        deadline = time.monotonic() + 30
        while True:
            try:
                page = httpx.get(url)
                fires = [ln for ln in httpx.get(f"{url}metrics").text.splitlines()
                         if ln.startswith("rsched_scheduler_fires_total ")]
                if fires and float(fires[0].split()[1]) >= 1:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.2)
        assert page.status_code == 200 and "hello-every-second" in page.text
        assert "every second" in page.text
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in rest, "".join(lines) + rest
    _keys(redis_url, "rsched-dev-ui:*", delete=True)
