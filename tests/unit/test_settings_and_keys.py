"""Settings parsing, key naming and shard mapping, backoff arithmetic."""

from __future__ import annotations

import random

import pytest

from rsched.engine.keys import ShardKeys, shard_of
from rsched.errors import ConfigError, InvalidQueueName
from rsched.models import RetryPolicy
from rsched.names import validate_queue
from rsched.roles.worker import backoff_ms
from rsched.settings import Settings


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
