"""The `rsched` command line as a user runs it: `rsched dev` and admin verbs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from rsched.devservers import free_port

RSCHED = [sys.executable, "-c", "from rsched.cli import main; main()"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RSCHED, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_dev_starts_private_redis_and_prints_every_second() -> None:
    # no Redis listens on this port, so `rsched dev` must start its own
    env = {**os.environ, "RSCHED_REDIS__URL": f"redis://127.0.0.1:{free_port()}/0",
           "RSCHED_ARCHIVER__DSN": f"postgresql://nobody@127.0.0.1:{free_port()}/none"}
    proc = subprocess.Popen([*RSCHED, "dev"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        assert proc.stdout is not None
        while time.monotonic() < deadline and sum("hello, rsched!" in ln for ln in lines) < 3:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    hellos = [ln for ln in lines if "hello, rsched!" in ln]
    assert len(hellos) >= 3, "".join(lines + [rest])
    assert "started a private redis-server" in "".join(lines)
    assert proc.returncode == 0, rest
    assert "Traceback" not in "".join(lines) + rest


def test_preview_prints_next_fires_and_rejects_bad_cron_without_traceback(
        redis_url: str) -> None:
    env = {"RSCHED_REDIS__URL": redis_url}
    ok = run_cli("jobs", "preview", "--cron", "0 0 12 * * *", "--tz", "Europe/Berlin",
                 "--count", "2", env=env)
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.split()
    assert len(lines) == 2 and all(ln.endswith("T11:00:00+00:00") or
                                   ln.endswith("T10:00:00+00:00") for ln in lines)
    bad = run_cli("jobs", "preview", "--cron", "61 * * * *", env=env)
    assert bad.returncode == 1
    assert "error: cron '61 * * * *': invalid expression" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_admin_verbs_on_unknown_job_and_unreachable_redis_fail_cleanly(redis_url: str) -> None:
    missing = run_cli("jobs", "pause", "no-such-job", env={"RSCHED_REDIS__URL": redis_url})
    assert missing.returncode == 1
    assert "error: pause job: job 'no-such-job' not found" in missing.stderr
    down = run_cli("jobs", "list", env={"RSCHED_REDIS__URL": f"redis://127.0.0.1:{free_port()}"})
    assert down.returncode == 3 and "cannot reach Redis" in down.stderr
    assert "Traceback" not in missing.stderr + down.stderr
