"""The `rsched` command line as a user runs it: `rsched dev` and admin verbs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlparse

import pytest
import redis
from typer.testing import CliRunner

from rsched.archive import pg
from rsched.cli import app
from rsched.client import Client
from rsched.devservers import free_port, reachable
from rsched.engine.keys import ShardKeys
from rsched.errors import ArchiveError
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
    assert len(lines) == 2 and all(ln.endswith("T11:00:00Z") or
                                   ln.endswith("T10:00:00Z") for ln in lines)
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
    listed = in_process("jobs", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [j["id"] for j in json.loads(listed.stdout)] == ["nightly"]

    def show() -> dict[str, Any]:
        out = in_process("jobs", "show", "nightly", "--json", env=env)
        assert out.returncode == 0, out.stderr
        return cast(dict[str, Any], json.loads(out.stdout))

    assert show()["job"]["state"] == "active" and show()["runs"] == []
    for verb, state in (("pause", "paused"), ("resume", "active")):
        out = in_process("jobs", verb, "nightly", env=env)
        assert out.returncode == 0 and out.stdout.strip() == f"{verb} nightly: ok", out.stderr
        assert show()["job"]["state"] == state
    now = in_process("jobs", "run-now", "nightly", env=env)
    assert now.returncode == 0 and now.stdout.startswith("run-now nightly: ok (nightly:"), now
    runs = show()["runs"]
    assert [(r["id"], r["status"]) for r in runs] == [("nightly:1", "queued")], runs
    assert in_process("jobs", "cancel", "nightly", env=env).returncode == 0
    assert show()["job"]["state"] == "cancelled"
    dead = in_process("dead", "--json", env=env)
    assert dead.returncode == 0 and json.loads(dead.stdout) == []


def test_status_shows_due_jobs_streams_archive_lag_and_live_roles(redis_url: str) -> None:
    prefix = f"cli{uuid.uuid4().hex[:8]}"
    env = {"RSCHED_REDIS__URL": redis_url, "RSCHED_REDIS__PREFIX": prefix}

    async def setup() -> int:
        client = await Client.connect(Settings.from_env(env))
        try:
            await client.engine.feed.ensure_event_groups()  # an archiver exists, reads nothing
            await client.schedule(JobDef(id="soon", task="mail.send", queue="mail",
                                         schedule=Every(every_ms=60_000)))
            now = await client.clock.now_ms()
            await client.engine.runs.heartbeat("w1", now)
            return now
        finally:
            await client.close()

    created_ms = asyncio.run(setup())
    time.sleep(0.05)
    out = run_cli("status", "--json", env=env)
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["due"] == 1 and status["queues"] == {"mail": 0}
    assert status["events"] == 1, "the job's creation, not yet archived"
    assert status["archive_lag_ms"] >= status["now_ms"] - created_ms >= 50
    assert list(status["workers"]) == ["w1"] and status["schedulers"] == {}


def in_process(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`rsched <args>` through typer's CliRunner, shaped like run_cli's result."""
    out = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    return subprocess.CompletedProcess(list(args), out.exit_code, out.stdout, out.stderr)


DOWN = {"RSCHED_REDIS__URL": "redis://127.0.0.1:1/0"}  # never reached: settings fail first


@pytest.mark.parametrize(("role", "env", "message"), [
    ("migrate", {"RSCHED_ARCHIVER__RETENTION_DAYS": "-3"},
     "RSCHED_ARCHIVER__RETENTION_DAYS=-3: must be >= 1"),
    ("archiver", {"RSCHED_ARCHIVER__RETENTION_DAYS": "0"},
     "RSCHED_ARCHIVER__RETENTION_DAYS=0: must be >= 1"),
    ("scheduler", {"RSCHED_SCHEDULER__LEASE_S": "0"},
     "RSCHED_SCHEDULER__LEASE_S=0: must be >= 0.001"),
    ("scheduler", {"RSCHED_SCHEDULER__BATCH": "0"}, "RSCHED_SCHEDULER__BATCH=0: must be >= 1"),
    ("scheduler", {"RSCHED_SCHEDULER__LEASE_S": "2"},
     "RSCHED_SCHEDULER__LEASE_S=2.0: must be >= 3 x RSCHED_SCHEDULER__MAX_SLEEP_S=1.0"),
    ("worker", {"RSCHED_WORKER__THREADS": "0"}, "RSCHED_WORKER__THREADS=0: must be >= 1"),
    ("worker", {"RSCHED_WORKER__CONCURRENCY": "lots"},
     "RSCHED_WORKER__CONCURRENCY=lots: must be an int"),
    ("worker", {"RSCHED_WORKR__THREADS": "4"},
     "RSCHED_WORKR__THREADS: unknown setting (did you mean RSCHED_WORKER__THREADS?)"),
    ("dev", {"RSCHED_REDIS__URL": "redis://127.0.0.1:1/x"},
     "RSCHED_REDIS__URL=redis://127.0.0.1:1/x: database 'x' is not a number within"),
])
def test_a_bad_setting_exits_2_with_one_line_naming_the_variable(
        role: str, env: dict[str, str], message: str) -> None:
    out = run_cli(role, env={**DOWN, **env})
    assert out.returncode == 2, out
    assert out.stderr.startswith(f"error: {message}") and out.stderr.count("\n") == 1, out
    assert out.stdout == ""


def test_a_redis_db_index_the_server_lacks_exits_2_naming_the_url(redis_url: str) -> None:
    env = {"RSCHED_REDIS__URL": redis_url.rsplit("/", 1)[0] + "/99"}
    for command in (["jobs", "list"], ["scheduler"]):
        out = run_cli(*command, env=env)
        assert out.returncode == 2, out
        assert out.stderr.startswith("error: RSCHED_REDIS__URL (--redis-url): DB index is out"
                                     " of range") and out.stderr.count("\n") == 1, out


async def test_negative_or_zero_retention_is_refused_and_drops_no_partition(
        archive_dsn: str) -> None:
    assert run_cli("migrate", "--dsn", archive_dsn).returncode == 0
    conn = await pg.connect(archive_dsn)
    try:
        before = await pg.partitions(conn)
        assert datetime.now(UTC).date() in before
        for days in ("-3", "0"):
            out = run_cli("migrate", "--dsn", archive_dsn,
                          env={"RSCHED_ARCHIVER__RETENTION_DAYS": days})
            assert out.returncode == 2 and "RSCHED_ARCHIVER__RETENTION_DAYS" in out.stderr, out
            assert "up to date" not in out.stdout
        with pytest.raises(ArchiveError, match="retention of 0 day"):
            await pg.apply_retention(conn, datetime.now(UTC), 0)
        assert await pg.partitions(conn) == before
    finally:
        await conn.close()


def test_migrate_with_a_bad_dsn_exits_1_naming_migrate_and_the_dsn() -> None:
    garbage = run_cli("migrate", "--dsn", "garbage")
    assert garbage.returncode == 1, garbage
    assert garbage.stderr.startswith("error: migrate: the archive DSN (--dsn,"
                                     " RSCHED_ARCHIVER__DSN) is not a PostgreSQL connection")
    down = run_cli("migrate", "--dsn", f"postgresql://nobody@127.0.0.1:{free_port()}/x")
    assert down.returncode == 1 and down.stderr.startswith("error: migrate: cannot connect")
    for out in (garbage, down):
        assert out.stderr.count("\n") == 1 and "(has `rsched migrate` run?)" not in out.stderr


@pytest.mark.parametrize("role", ["scheduler", "worker"])
def test_a_role_whose_component_crashes_exits_non_zero(redis_url: str, role: str) -> None:
    prefix = f"cli{uuid.uuid4().hex[:8]}"
    keys = ShardKeys(prefix, 0)
    # a key of the wrong type makes the component's first Redis call fail (WRONGTYPE): not
    # an outage to ride out, a crash
    broken = keys.lease if role == "scheduler" else keys.queue("default")
    r = redis.Redis.from_url(redis_url)
    try:
        r.hset(broken, "not", "a stream or string")
        out = run_cli(role, env={"RSCHED_REDIS__URL": redis_url, "RSCHED_REDIS__PREFIX": prefix,
                                 "RSCHED_REDIS__SHARDS": "1"})
    finally:
        r.delete(broken)
        r.close()
    assert out.returncode == 1, out
    assert f"error: {role} crashed: ResponseError: WRONGTYPE" in out.stderr, out.stderr
