"""Settings parsing, key naming and shard mapping, backoff arithmetic."""

from __future__ import annotations

import random

import msgspec
import pytest

from rsched.engine.keys import ShardKeys, shard_of
from rsched.errors import ConfigError, InvalidQueueName
from rsched.models import RetryPolicy
from rsched.names import validate_queue
from rsched.roles.outcomes import backoff_ms
from rsched.settings import _SECTIONS, Settings, var


def test_env_overrides_defaults_and_cli_overrides_env(tmp_path: object) -> None:
    env = {"RSCHED_WORKER__CONCURRENCY": "7", "RSCHED_WORKER__QUEUES": "a,b",
           "RSCHED_REDIS__SHARDS": "8", "RSCHED_SCHEDULER__SHARDS": "1"}
    s = Settings.from_env(env, overrides={"worker.concurrency": 9})
    assert s.worker.concurrency == 9
    assert s.worker.queues == ["a", "b"]
    assert s.redis.shards == 8
    assert s.scheduler.shards == [1]


def test_env_file_is_below_environment(tmp_path: object) -> None:
    from pathlib import Path

    f = Path(str(tmp_path)) / ".env"
    f.write_text("RSCHED_WORKER__CONCURRENCY=3\nRSCHED_WORKER__BATCH=11\n# comment\n")
    s = Settings.from_env({"RSCHED_WORKER__CONCURRENCY": "4"}, env_file=f)
    assert (s.worker.concurrency, s.worker.batch) == (4, 11)


@pytest.mark.parametrize("env", [
    {"RSCHED_REDIS__SHARDS": "0"},
    {"RSCHED_WORKER__CONCURRENCY": "lots"},
    {"RSCHED_WORKER__LEASE_S": "1", "RSCHED_WORKER__HEARTBEAT_S": "5"},
    {"RSCHED_REDIS__URL": "http://127.0.0.1:6379"},
    {"RSCHED_REDIS__URL": "127.0.0.1:6379"},
    {"RSCHED_WORKER__QUEUES": "default,has space"},
])
def test_bad_settings_raise_config_error(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env(env)


@pytest.mark.parametrize(("env", "message"), [
    ({"RSCHED_ARCHIVER__RETENTION_DAYS": "-3"},
     "RSCHED_ARCHIVER__RETENTION_DAYS=-3: must be >= 1"),
    ({"RSCHED_ARCHIVER__RETENTION_DAYS": "0"}, "RSCHED_ARCHIVER__RETENTION_DAYS=0: must be >= 1"),
    ({"RSCHED_SCHEDULER__LEASE_S": "0"}, "RSCHED_SCHEDULER__LEASE_S=0: must be >= 0.001"),
    ({"RSCHED_SCHEDULER__BATCH": "0"}, "RSCHED_SCHEDULER__BATCH=0: must be >= 1"),
    ({"RSCHED_WORKER__THREADS": "0"}, "RSCHED_WORKER__THREADS=0: must be >= 1"),
    ({"RSCHED_WORKER__HEARTBEAT_S": "nan"}, "RSCHED_WORKER__HEARTBEAT_S=nan: must be >= 0.001"),
    ({"RSCHED_WORKER__CONCURRENCY": "lots"}, "RSCHED_WORKER__CONCURRENCY=lots: must be an int"),
    ({"RSCHED_API__PORT": "70000"}, "RSCHED_API__PORT=70000: must be <= 65535"),
    ({"RSCHED_REDIS__PREFIX": "a{b}"}, "RSCHED_REDIS__PREFIX=a{b}: must match"),
    ({"RSCHED_REDIS__URL": "redis://h:6379/-1"},
     "RSCHED_REDIS__URL=redis://h:6379/-1: database '-1' is not a number within 0.."),
    ({"RSCHED_REDIS__URL": "unix:///tmp/r.sock?db=x"},
     "RSCHED_REDIS__URL=unix:///tmp/r.sock?db=x: database 'x' is not a number"),
    ({"RSCHED_WORKER__QUEUES": "a,b c"}, "RSCHED_WORKER__QUEUES=a,b c: invalid queue name 'b c'"),
    ({"RSCHED_WORKER__MODULES": "tasks,my tasks"}, "RSCHED_WORKER__MODULES=tasks,my tasks: must"),
    # cross-checks name both variables
    ({"RSCHED_SCHEDULER__LEASE_S": "2"},
     "RSCHED_SCHEDULER__LEASE_S=2.0: must be >= 3 x RSCHED_SCHEDULER__MAX_SLEEP_S=1.0"),
    ({"RSCHED_WORKER__LEASE_S": "6", "RSCHED_WORKER__BLOCK_S": "3"},
     "RSCHED_WORKER__LEASE_S=6.0: must exceed 2 x RSCHED_WORKER__BLOCK_S=3.0"),
    ({"RSCHED_WORKER__LEASE_S": "1", "RSCHED_WORKER__HEARTBEAT_S": "5"},
     "RSCHED_WORKER__LEASE_S=1.0: must exceed RSCHED_WORKER__HEARTBEAT_S=5.0"),
    ({"RSCHED_SCHEDULER__SHARDS": "0,16"},
     "RSCHED_SCHEDULER__SHARDS=[0, 16]: must all be below RSCHED_REDIS__SHARDS=16"),
    ({"RSCHED_ARCHIVER__CLAIM_IDLE_S": "0.5"},
     "RSCHED_ARCHIVER__CLAIM_IDLE_S=0.5: must exceed RSCHED_ARCHIVER__FLUSH_S=0.5"),
    # unknown or misspelt variables name the closest valid one
    ({"RSCHED_WORKR__THREADS": "4"},
     "RSCHED_WORKR__THREADS: unknown setting (did you mean RSCHED_WORKER__THREADS?)"),
    ({"RSCHED_ARCHIVER_RETENTION_DAYS": "7"},
     "RSCHED_ARCHIVER_RETENTION_DAYS: unknown setting (did you mean"
     " RSCHED_ARCHIVER__RETENTION_DAYS?)"),
    ({"RSCHED_COLOUR": "blue"}, "RSCHED_COLOUR: unknown setting (see `rsched --help`"),
])
def test_bad_setting_is_one_line_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as bad:
        Settings.from_env(env)
    assert str(bad.value).startswith(message) and "\n" not in str(bad.value), str(bad.value)


def test_an_option_is_named_by_its_setting_and_test_variables_are_ignored() -> None:
    with pytest.raises(ConfigError, match=r"^worker.concurrency=0: must be >= 1$"):
        Settings.from_env({}, overrides={"worker.concurrency": 0})
    s = Settings.from_env({"RSCHED_TEST_REDIS_URL": "x", "RSCHED_REDIS__URL": "redis://h/15"})
    assert s.redis.url == "redis://h/15" and Settings.from_env({}) == Settings()
    edge = {"RSCHED_SCHEDULER__LEASE_S": "0.6", "RSCHED_SCHEDULER__MAX_SLEEP_S": "0.2"}
    assert Settings.from_env(edge).scheduler.lease_s == 0.6, "compared in ms, not floats"


def test_every_numeric_setting_has_bounds_in_its_type() -> None:
    unbounded = []
    for section, cls in _SECTIONS.items():
        for field in msgspec.inspect.type_info(cls).fields:  # type: ignore[attr-defined]
            t = field.type
            if isinstance(t, msgspec.inspect.ListType):
                t = t.item_type
            if isinstance(t, msgspec.inspect.UnionType):  # e.g. list[int] | None
                t = next(x for x in t.types if not isinstance(x, msgspec.inspect.NoneType))
                t = getattr(t, "item_type", t)
            if isinstance(t, msgspec.inspect.IntType | msgspec.inspect.FloatType):
                low = t.ge if t.ge is not None else t.gt
                if low is None or t.le is None:
                    unbounded.append(var(section, field.name))
    assert unbounded == []


def test_shard_is_a_pure_function_of_the_id() -> None:
    assert shard_of("job-42", 16) == shard_of("job-42", 16)
    spread = {shard_of(f"job-{i}", 16) for i in range(1000)}
    assert spread == set(range(16))


def test_queue_names_validated_at_the_edge() -> None:
    assert validate_queue("emails.high_1") == "emails.high_1"
    for bad in ["", "a b", "x" * 65, "q:{s01}"]:
        with pytest.raises(InvalidQueueName):
            ShardKeys("rsched", 0).queue(bad)


def test_backoff_grows_exponentially_with_cap_and_bounded_jitter() -> None:
    policy = RetryPolicy(backoff_s=1, backoff_factor=2, backoff_max_s=10, jitter=0.1)
    rng = random.Random(1)
    for attempt, base in [(1, 1000), (2, 2000), (3, 4000), (4, 8000), (5, 10000), (9, 10000)]:
        got = backoff_ms(policy, attempt, rng)
        assert base * 0.9 <= got <= base * 1.1
    assert backoff_ms(RetryPolicy(jitter=0), 1, rng) == 1000
