"""Secrets by reference: the value reaches the target, and nothing rsched keeps or says."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from rsched.archive.archiver import Archiver
from rsched.errors import ConfigError
from rsched.models import JobDef, RetryPolicy, RunStatus
from rsched.roles.kinds.secrets import SecretStore
from rsched.settings import ArchiverSettings
from rsched.task_kinds import HttpTask, Secret, ShellTask
from tests.support.http_target import Target

VALUE = "s3cr3t-Value-9f2c"  # a secret value; must appear nowhere rsched writes


async def dump_redis(redis: Any, prefix: str) -> bytes:
    """Every key of the prefix with all its contents, as one blob."""
    out: list[bytes] = []
    async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
        kind = (await redis.type(key)).decode()
        if kind == "hash":
            value: Any = await redis.hgetall(key)
        elif kind == "stream":
            value = await redis.xrange(key)
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            value = await redis.smembers(key)
        elif kind == "list":
            value = await redis.lrange(key, 0, -1)
        else:
            value = await redis.get(key)
        out.append(key + b" " + repr(value).encode())
    return b"\n".join(out)


async def dump_archive(dsn: str) -> str:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        tables = await (await conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE "
            "table_type = 'BASE TABLE' AND table_schema NOT IN "
            "('pg_catalog', 'information_schema')")).fetchall()
        rows = [await (await conn.execute(f'SELECT * FROM "{s}"."{t}"')).fetchall()
                for s, t in tables]
    assert tables
    return repr(rows)


async def test_a_secret_reaches_the_target_but_nothing_rsched_keeps_or_says(
        make_system: Any, target: Target, redis: Any, prefix: str, archive_dsn: str,
        clock: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        tmp_path: Path) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("RSCHED_SECRET_API_TOKEN", VALUE)
    (tmp_path / "secrets").write_bytes(msgspec.json.encode({"db_password": f"pw-{VALUE}"}))
    sys_ = await make_system(queues=["default", "shell"], allow_shell=True,
                             secrets_file=str(tmp_path / "secrets"))
    token = {"X-Token": Secret("api_token")}
    once = RetryPolicy(max_attempts=1)
    ok = await sys_.client.schedule(JobDef(http=HttpTask(
        url=target.url("/echo"), method="POST", headers=token,
        json={"auth": {"secret": "api_token"}, "n": 1})))
    bad = await sys_.client.schedule(JobDef(http=HttpTask(
        url=target.url("/echo?status=500"), headers=token), retry=once))
    sh = await sys_.client.schedule(JobDef(shell=ShellTask(
        argv=['echo "$TOKEN $PW"; echo "$TOKEN" >&2; exit 1'], shell=True,
        env={"TOKEN": Secret("API_TOKEN"), "PW": Secret("db_password")}), queue="shell",
        retry=once))
    await sys_.step()

    # it reached the target, in the header and in the JSON body
    hits = target.to("/echo")
    assert [h.headers["X-Token"] for h in hits] == [VALUE, VALUE]
    (post,) = [h for h in hits if h.method == "POST"]
    assert msgspec.json.decode(post.body) == {"auth": VALUE, "n": 1}
    # the runs record the target's answers and the process's output, scrubbed
    assert (await sys_.last_run(ok)).result["body"] == "token=***"
    failed = await sys_.last_run(bad)
    assert failed.status is RunStatus.DEAD and failed.error == "HTTP 500 Internal Server " \
        "Error: token=***"
    shell_run = await sys_.last_run(sh)
    assert shell_run.status is RunStatus.DEAD and shell_run.error == "exit code 1; stderr: ***"

    archiver = Archiver(sys_.client.engine, ArchiverSettings(
        dsn=archive_dsn, flush_s=0.0, claim_idle_s=3600), clock, "a1")
    await archiver.start()
    while (await archiver.tick(block_ms=None, flush=True)).events:
        pass
    await archiver.close()

    answers = [await sys_.client.get(j) for j in (ok, bad, sh)]
    answers += [await sys_.client.runs(j) for j in (ok, bad, sh)]
    answers += [await sys_.client.dead_letters(), await sys_.client.status()]
    places = {
        "redis": await dump_redis(redis, prefix),
        "archive": (await dump_archive(archive_dsn)).encode(),
        "client": msgspec.json.encode(answers),
        "logs": caplog.text.encode(),
    }
    assert b"api_token" in places["redis"]  # the reference is stored, not the value
    assert b"events" in places["redis"] and b"HTTP 500" in places["archive"]
    leaks = [where for where, blob in places.items() if VALUE.encode() in blob]
    assert leaks == []


def test_secrets_file_key_value_lines_and_env_first(tmp_path: Path) -> None:
    path = tmp_path / "s.env"
    path.write_text("# comment\nalpha = one\nBETA=two=2\n")
    store = SecretStore(str(path), {"RSCHED_SECRET_ALPHA": "from-env"})
    assert (store.get("alpha"), store.get("beta"), store.get("gamma")) == \
        ("from-env", "two=2", None)
    path.write_text('{"gamma": "three"}')
    assert store.get("GAMMA") == "three" or store.get("gamma") == "three"


@pytest.mark.parametrize(("text", "message"), [
    ("no equals sign", "expected KEY=VALUE"),
    ('{"a": 1}', "string values"),
    ("{not json", "invalid JSON"),
])
def test_a_malformed_secrets_file_stops_the_worker(tmp_path: Path, text: str,
                                                   message: str) -> None:
    path = tmp_path / "s"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        SecretStore(str(path), {})
    with pytest.raises(ConfigError, match="No such file"):
        SecretStore(str(tmp_path / "missing"), {})


async def test_an_undefined_secret_fails_the_run_naming_it(make_system: Any,
                                                           target: Target) -> None:
    sys_ = await make_system()
    job = await sys_.client.schedule(JobDef(http=HttpTask(
        url=target.url("/ok"), headers={"A": Secret("nope")})))
    await sys_.step()
    run = await sys_.last_run(job)
    assert run.status is RunStatus.FAILED and "RSCHED_SECRET_NOPE" in (run.error or "")
    assert target.to("/ok") == []
