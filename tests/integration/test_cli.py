"""The `rsched` command line as a user runs it: `rsched dev` and admin verbs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from typing import Any, cast
from urllib.parse import urlparse

from rsched.client import Client
from rsched.devservers import free_port, reachable
from rsched.models import Cron, Every, JobDef
from rsched.settings import Settings
from tests.support.procs import RSCHED, run_cli


def test_dev_starts_private_redis_and_prints_every_second() -> None:
    # no Redis listens on this port, so `rsched dev` must start its own
    env = {**os.environ, "RSCHED_REDIS__URL": f"redis://127.0.0.1:{free_port()}/0",
           "RSCHED_ARCHIVER__DSN": f"postgresql://nobody@127.0.0.1:{free_port()}/none"}
    proc = subprocess.Popen([*RSCHED, "dev"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, start_new_session=True)
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
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole group
        rest, _ = proc.communicate(timeout=30)
    hellos = [ln for ln in lines if "hello, rsched!" in ln]
    assert len(hellos) >= 3, "".join(lines + [rest])
    [started] = [ln for ln in lines if "started a private redis-server at" in ln]
    assert proc.returncode == 0, rest
    assert "Traceback" not in "".join(lines) + rest
    # the roles stopped before the private servers did, and those are gone
    assert "unavailable" not in rest and "without final flush" not in rest, rest
    port = urlparse(started.split(" at ", 1)[1].strip()).port
    assert port is not None and not reachable("127.0.0.1", port)


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
    assert bad.returncode == 2, "bad input exits 2 (docs/decisions.md)"
    assert "error: cron '61 * * * *': invalid expression" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_admin_verbs_on_unknown_job_and_unreachable_redis_fail_cleanly(redis_url: str) -> None:
    missing = run_cli("jobs", "pause", "no-such-job", env={"RSCHED_REDIS__URL": redis_url})
    assert missing.returncode == 1
    assert "error: pause job: job 'no-such-job' not found" in missing.stderr
    down = run_cli("jobs", "list", env={"RSCHED_REDIS__URL": f"redis://127.0.0.1:{free_port()}"})
    assert down.returncode == 3 and "cannot reach Redis" in down.stderr
    assert "Traceback" not in missing.stderr + down.stderr
    bad_url = run_cli("jobs", "list", "--redis-url", "http://127.0.0.1:6379")
    assert bad_url.returncode == 2 and "use redis://, rediss:// or unix://" in bad_url.stderr
    bad_queue = run_cli("worker", "--queues", "a b", env={"RSCHED_REDIS__URL": redis_url})
    assert bad_queue.returncode == 2 and "invalid queue name 'a b'" in bad_queue.stderr
    bad_limit = run_cli("jobs", "list", "--limit", "0", env={"RSCHED_REDIS__URL": redis_url})
    assert bad_limit.returncode == 2 and "--limit" in bad_limit.stderr
    assert "Traceback" not in bad_url.stderr + bad_queue.stderr + bad_limit.stderr


def test_admin_verbs_list_show_and_change_a_job(redis_url: str) -> None:
    prefix = f"cli{uuid.uuid4().hex[:8]}"  # a keyspace of its own: `jobs list` sees only ours
    env = {"RSCHED_REDIS__URL": redis_url, "RSCHED_REDIS__PREFIX": prefix}
    settings = Settings.from_env(env)

    async def create() -> None:
        client = await Client.connect(settings)
        try:
            await client.schedule(JobDef(id="nightly", task="reports.build",
                                         schedule=Cron(expr="0 3 * * *", tz="Europe/Berlin")))
        finally:
            await client.close()

    asyncio.run(create())
    listed = run_cli("jobs", "list", env=env)
    assert listed.returncode == 0 and listed.stdout.split() == ["nightly"], listed.stderr

    def show() -> dict[str, Any]:
        out = run_cli("jobs", "show", "nightly", env=env)
        assert out.returncode == 0, out.stderr
        return cast(dict[str, Any], json.loads(out.stdout))

    assert show()["job"]["state"] == "active" and show()["runs"] == []
    for verb, state in (("pause", "paused"), ("resume", "active")):
        out = run_cli("jobs", verb, "nightly", env=env)
        assert out.returncode == 0 and out.stdout.strip() == f"{verb} nightly: ok", out.stderr
        assert show()["job"]["state"] == state
    now = run_cli("jobs", "run-now", "nightly", env=env)
    assert now.returncode == 0 and now.stdout.startswith("run-now nightly: ok (nightly:"), now
    runs = show()["runs"]
    assert [(r["id"], r["status"]) for r in runs] == [("nightly:1", "queued")], runs
    assert run_cli("jobs", "cancel", "nightly", env=env).returncode == 0
    assert show()["job"]["state"] == "cancelled"
    dead = run_cli("dead", env=env)
    assert dead.returncode == 0 and json.loads(dead.stdout) == []


def test_status_shows_due_jobs_streams_archive_lag_and_live_roles(redis_url: str) -> None:
    prefix = f"cli{uuid.uuid4().hex[:8]}"
    env = {"RSCHED_REDIS__URL": redis_url, "RSCHED_REDIS__PREFIX": prefix}

    async def setup() -> int:
        client = await Client.connect(Settings.from_env(env))
        try:
            await client.engine.ensure_event_groups()  # an archiver exists, reads nothing
            await client.schedule(JobDef(id="soon", task="mail.send", queue="mail",
                                         schedule=Every(every_ms=60_000)))
            now = await client.clock.now_ms()
            await client.engine.heartbeat("w1", now)
            return now
        finally:
            await client.close()

    created_ms = asyncio.run(setup())
    time.sleep(0.05)
    out = run_cli("status", env=env)
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["due"] == 1 and status["queues"] == {"mail": 0}
    assert status["events"] == 1, "the job's creation, not yet archived"
    assert status["archive_lag_ms"] >= status["now_ms"] - created_ms >= 50
    assert list(status["workers"]) == ["w1"] and status["schedulers"] == {}
