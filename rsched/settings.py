"""The one typed settings tree, read from RSCHED_* environment variables.

Owns: defaults, env parsing, cross-field checks. Must not: connect to anything.
``RSCHED_WORKER__CONCURRENCY=50`` sets ``settings.worker.concurrency``.
Precedence: explicit overrides (CLI) > environment > env file > default.
"""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Annotated, Any

import msgspec

from rsched.errors import ConfigError
from rsched.names import validate_queue

REDIS_SCHEMES = ("redis", "rediss", "unix")


class RedisSettings(msgspec.Struct, frozen=True, kw_only=True):
    url: str = "redis://127.0.0.1:6379/0"  # redis:// or unix://
    prefix: str = "rsched"  # every key starts with this
    shards: int = 16  # fixed when a deployment is created (stored in <prefix>:meta)
    max_connections: int = 64  # per process pool
    socket_timeout_s: float = 30.0  # a stalled Redis surfaces as an error, not a hang
    connect_timeout_s: float = 5.0
    done_job_ttl_s: float = 86400.0  # a finished or cancelled job's hash expires after this
    fast_client: bool = True  # hot-path commands over engine/fastredis.py (hiredis)


class SchedulerSettings(msgspec.Struct, frozen=True, kw_only=True):
    lease_s: float = 10.0  # shard lease time; a dead scheduler's shards move after this
    batch: int = 500  # due members read and fired per script call
    max_sleep_s: float = 1.0  # upper bound of a sleep (wake signals usually come first)
    shards: list[int] | None = None  # static assignment (no leases); None = lease any shard
    events_maxlen: int = 1_000_000  # hard cap per shard events stream (archiver trims sooner)


class WorkerSettings(msgspec.Struct, frozen=True, kw_only=True):
    queues: list[str] = msgspec.field(default_factory=lambda: ["default"])
    concurrency: int = 100  # runs executing at once in this process
    batch: int = 200  # entries per XREADGROUP
    block_s: float = 1.0  # XREADGROUP BLOCK when idle
    lease_s: float = 30.0  # a run idle this long without extension is reclaimed
    reclaim_every_s: float = 5.0  # how often this worker looks for abandoned runs
    heartbeat_s: float = 5.0
    grace_s: float = 25.0  # SIGTERM: time to finish in-flight runs
    run_ttl_s: float = 3600.0  # run state kept in Redis after it ends
    trim_every_s: float = 5.0  # how often acked queue entries are trimmed
    threads: int = 32  # pool for synchronous task callables
    modules: list[str] = []  # task modules imported at start


class ArchiverSettings(msgspec.Struct, frozen=True, kw_only=True):
    dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    batch: int = 2000  # events per commit
    flush_s: float = 0.5  # commit at least this often when events wait
    retention_days: int = 30  # runs partitions older than this are dropped
    claim_idle_s: float = 30.0  # events unacked this long by a dead archiver are taken over
    report_every_s: float = 60.0  # how often the archive lag is logged
    retention_every_s: float = 3600.0  # how often old partitions go and new ones are made
    retry_max_s: float = 5.0  # longest back-off between attempts while PostgreSQL is down


class ApiSettings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8000
    dev_mode: bool = False  # no API keys: every request is tenant "default", role admin
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=64 << 20)] = 4 << 20  # else 413
    rate_per_s: Annotated[float, msgspec.Meta(gt=0)] = 200.0  # token refill per API key
    burst: Annotated[int, msgspec.Meta(ge=1)] = 400  # bucket size per API key
    key_cache_s: Annotated[float, msgspec.Meta(ge=0, le=60)] = 5.0  # revocation delay bound
    idempotency_ttl_s: Annotated[float, msgspec.Meta(gt=0)] = 86400.0  # replay window
    history: bool = True  # older runs from the archive (archiver.dsn) when it is reachable


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    redis: RedisSettings = RedisSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    worker: WorkerSettings = WorkerSettings()
    archiver: ArchiverSettings = ArchiverSettings()
    api: ApiSettings = ApiSettings()

    def __post_init__(self) -> None:
        scheme, sep, _ = self.redis.url.partition("://")
        if not sep or scheme not in REDIS_SCHEMES:
            raise ConfigError(f"redis.url {self.redis.url!r}: use redis://, rediss:// or unix://")
        for queue in self.worker.queues:
            validate_queue(queue)
        if not 1 <= self.redis.shards <= 1024:
            raise ConfigError("redis.shards must be within 1..1024")
        if self.worker.concurrency < 1 or self.worker.batch < 1:
            raise ConfigError("worker.concurrency and worker.batch must be >= 1")
        if self.worker.block_s >= self.redis.socket_timeout_s:
            raise ConfigError("worker.block_s must be below redis.socket_timeout_s")
        if self.worker.lease_s <= self.worker.heartbeat_s:
            raise ConfigError("worker.lease_s must exceed worker.heartbeat_s")

    @classmethod
    def from_env(
        cls,
        environ: dict[str, str] | None = None,
        env_file: str | Path | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> Settings:
        env: dict[str, str] = {}
        if env_file is not None and Path(env_file).exists():
            env.update(_read_env_file(Path(env_file)))
        env.update(os.environ if environ is None else environ)
        tree: dict[str, Any] = {}
        for name, value in env.items():
            if not name.startswith("RSCHED_") or "__" not in name:
                continue
            section, _, field = name[len("RSCHED_"):].lower().partition("__")
            tree.setdefault(section, {})[field] = _parse(section, field, value)
        for dotted, value in (overrides or {}).items():
            section, _, field = dotted.partition(".")
            tree.setdefault(section, {})[field] = value
        try:
            return msgspec.convert(tree, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"bad setting: {exc}") from exc


def _parse(section: str, field: str, value: str) -> Any:
    # List fields are comma-separated; everything else is left for msgspec to coerce.
    hints = typing.get_type_hints(_SECTIONS.get(section, Settings))
    hint = str(hints.get(field, ""))
    return [v for v in value.split(",") if v] if "list[" in hint else value


def _read_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


_SECTIONS: dict[str, type] = {
    "redis": RedisSettings, "scheduler": SchedulerSettings, "worker": WorkerSettings,
    "archiver": ArchiverSettings, "api": ApiSettings,
}
