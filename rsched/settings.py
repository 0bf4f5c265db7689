"""The one typed settings tree, read from RSCHED_* environment variables.

Owns: defaults, bounds (msgspec constraints in each field's type), env parsing, the
cross-field checks (``__post_init__``) and the one-line error naming the variable at
fault. Must not: connect to anything.
``RSCHED_WORKER__CONCURRENCY=50`` sets ``settings.worker.concurrency``.
Precedence: explicit overrides (CLI) > environment > env file > default.
Everything is checked once, at load (``from_env``): an unknown or misspelt ``RSCHED_*``
variable is an error naming the closest valid one; variables starting ``RSCHED_TEST_``
belong to the test suite and ``RSCHED_SECRET_`` are secret values workers resolve
(docs/tasks.md): both are ignored here.
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlparse

import msgspec
from msgspec import Meta

from rsched.errors import ConfigError, InvalidQueueName, ValidationError
from rsched.names import validate_queue, validate_webhook_url
from rsched.task_kinds import is_shell_queue

REDIS_SCHEMES = ("redis", "rediss", "unix")
IGNORED_PREFIX = ("RSCHED_TEST_", "RSCHED_SECRET_")  # test variables and secrets: not settings
YEAR_S = 366 * 86400.0
# Durations: at least 1 ms (they become int milliseconds), at most a year.
Seconds = Annotated[float, Meta(ge=0.001, le=YEAR_S)]
Count = Annotated[int, Meta(ge=1, le=100_000)]  # batch sizes and concurrency
Name = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]  # part of every Redis key
Module = Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")]
MAX_DB = 2**31 - 2  # Redis' own bound on `databases`; the server's count is checked at connect


def var(section: str, field: str) -> str:
    """The environment variable of a setting: var("worker", "lease_s")."""
    return f"RSCHED_{section.upper()}__{field.upper()}"


class RedisSettings(msgspec.Struct, frozen=True, kw_only=True):
    url: str = "redis://127.0.0.1:6379/0"  # redis://, rediss:// or unix://; /N selects db N
    prefix: Name = "rsched"  # every key starts with this
    shards: Annotated[int, Meta(ge=1, le=1024)] = 16  # fixed at creation (in <prefix>:meta)
    max_connections: Count = 64  # per process pool
    socket_timeout_s: Seconds = 30.0  # a stalled Redis surfaces as an error, not a hang
    connect_timeout_s: Seconds = 5.0
    done_job_ttl_s: Seconds = 86400.0  # a finished or cancelled job's hash expires after this
    fast_client: bool = True  # hot-path commands over engine/fastredis.py (hiredis)

    def __post_init__(self) -> None:
        redis_db(self.url)


def redis_db(url: str) -> int:
    """The database number a Redis URL selects (0 when none); ConfigError when the URL
    is not a Redis URL or the number is not one Redis could have."""
    parts = urlparse(url)
    if parts.scheme not in REDIS_SCHEMES or "://" not in url:
        raise ConfigError(f"{var('redis', 'url')}={url}: use redis://, rediss:// or unix://")
    path = parts.path.strip("/") if parts.scheme != "unix" else ""
    db = parse_qs(parts.query).get("db", [path or "0"])[0]
    if not db.isdigit() or int(db) > MAX_DB:
        raise ConfigError(f"{var('redis', 'url')}={url}: database {db!r} is not a number"
                          f" within 0..{MAX_DB}")
    return int(db)


class SchedulerSettings(msgspec.Struct, frozen=True, kw_only=True):
    lease_s: Seconds = 10.0  # shard lease time; a dead scheduler's shards move after this
    batch: Count = 500  # due members read and fired per script call
    max_sleep_s: Seconds = 1.0  # upper bound of a sleep (wake signals usually come first)
    # Slots due within this are fired ahead, in batches; their runs wait in the worker
    # until due (docs/decisions.md, "Lookahead"). 0: fire each slot only once it is due.
    lookahead_ms: Annotated[int, Meta(ge=0, le=10_000)] = 50
    # static assignment (no leases); None = lease any shard
    shards: list[Annotated[int, Meta(ge=0, le=1023)]] | None = None
    # hard cap per shard events stream (archiver trims sooner)
    events_maxlen: Annotated[int, Meta(ge=1000, le=10**9)] = 1_000_000


class WorkerSettings(msgspec.Struct, frozen=True, kw_only=True):
    queues: Annotated[list[str], Meta(min_length=1, max_length=256)] = msgspec.field(
        default_factory=lambda: ["default"])
    concurrency: Count = 100  # runs executing at once in this process
    batch: Count = 200  # entries per XREADGROUP
    block_s: Seconds = 1.0  # XREADGROUP BLOCK when idle
    lease_s: Seconds = 30.0  # a run idle this long without extension is reclaimed
    reclaim_every_s: Seconds = 5.0  # how often this worker looks for abandoned runs
    heartbeat_s: Seconds = 5.0
    grace_s: Annotated[float, Meta(ge=0, le=YEAR_S)] = 25.0  # SIGTERM: in-flight runs finish
    run_ttl_s: Seconds = 3600.0  # run state kept in Redis after it ends
    trim_every_s: Seconds = 5.0  # how often acked queue entries are trimmed
    threads: Annotated[int, Meta(ge=1, le=4096)] = 32  # pool for synchronous task callables
    limit_retry_s: Seconds = 0.2  # a run refused by a full concurrency limit waits this long
    queue_config_s: Seconds = 1.0  # queue limits and priority levels are re-read this often
    modules: list[Module] = []  # task modules imported at start
    allow_shell: bool = False  # run shell tasks (and read the shell queues): docs/tasks.md
    secrets_file: Annotated[str, Meta(min_length=1, max_length=4096)] | None = None  # JSON
    http_max_connections: Count = 100  # HTTP tasks: the worker's shared connection pool
    shell_term_grace_s: Annotated[float, Meta(ge=0, le=600)] = 2.0  # SIGTERM -> SIGKILL

    def __post_init__(self) -> None:
        for queue in self.queues:
            try:
                validate_queue(queue)
            except InvalidQueueName as exc:
                raise ConfigError(f"{var('worker', 'queues')}={','.join(self.queues)}: {exc}"
                                  ) from None
            if is_shell_queue(queue) and not self.allow_shell:
                raise ConfigError(f"{var('worker', 'queues')}={','.join(self.queues)}: queue"
                                  f" {queue!r} holds shell tasks; only a worker started with"
                                  f" --allow-shell ({var('worker', 'allow_shell')}=true) reads it")


class ArchiverSettings(msgspec.Struct, frozen=True, kw_only=True):
    dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    batch: Count = 10_000  # new events per commit (docs/archive.md: batches)
    flush_s: Annotated[float, Meta(ge=0, le=3600)] = 0.5  # commit this often when events wait
    # runs partitions older than this many days are dropped (0 or less would drop today's)
    retention_days: Annotated[int, Meta(ge=1, le=36_600)] = 30
    claim_idle_s: Seconds = 30.0  # events unacked this long by a dead archiver are taken over
    report_every_s: Seconds = 60.0  # how often the archive lag is logged
    retention_every_s: Seconds = 3600.0  # how often old partitions go and new ones are made
    retry_max_s: Seconds = 5.0  # longest back-off between attempts while PostgreSQL is down


class ApiSettings(msgspec.Struct, frozen=True, kw_only=True):
    host: Annotated[str, Meta(min_length=1, max_length=255)] = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8000
    dev_mode: bool = False  # no API keys: every request is tenant "default", role admin
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=64 << 20)] = 4 << 20  # else 413
    rate_per_s: Annotated[float, Meta(gt=0, le=1e6)] = 200.0  # token refill per API key
    burst: Annotated[int, Meta(ge=1, le=1_000_000)] = 400  # bucket size per API key
    key_cache_s: Annotated[float, msgspec.Meta(ge=0, le=60)] = 5.0  # revocation delay bound
    idempotency_ttl_s: Seconds = 86400.0  # replay window
    history: bool = True  # older runs from the archive (archiver.dsn) when it is reachable


class MetricsSettings(msgspec.Struct, frozen=True, kw_only=True):
    # Each role process serves its own /metrics here (0 = off; docs/api.md suggests 9101
    # scheduler, 9102 worker, 9103 archiver, 9100 dev). The API serves /metrics on its port.
    host: Annotated[str, Meta(min_length=1, max_length=255)] = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 0
    # API /metrics: job hashes examined to count jobs by state (cached for cache_s)
    state_scan_max: Annotated[int, Meta(ge=0, le=10_000_000)] = 100_000
    cache_s: Annotated[float, Meta(ge=0, le=3600)] = 5.0


class AlertSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Failure alerts (docs/tasks.md, "Alerts and webhooks"): sent by workers' notifiers."""

    webhook_url: str | None = None  # POST each alert here as JSON; unset: the log only
    window_s: Seconds = 300.0  # per job: at most per_window alerts in this window
    per_window: Annotated[int, Meta(ge=1, le=1000)] = 1
    threshold: Annotated[int, Meta(ge=0, le=100_000)] = 0  # failed attempts in a window that
    # alert even when retries remain; 0 = only runs that end failed, dead or timed_out
    log: bool = True  # also log each alert (WARNING, logger rsched.alerts)

    def __post_init__(self) -> None:
        if self.webhook_url is not None:
            try:
                validate_webhook_url(self.webhook_url)
            except ValidationError as exc:
                raise ConfigError(f"{var('alerts', 'webhook_url')}: {exc}") from None


class NotifySettings(msgspec.Struct, frozen=True, kw_only=True):
    """The notifier (alerts and completion webhooks): `rsched notifier`, or inside each
    worker with enabled=true. Off in workers by default: it reads every event (about 150 µs
    of worker CPU per run, docs/benchmarks.md), which only deployments using alerts or
    webhooks should pay."""

    enabled: bool = False  # run a notifier inside each worker too
    concurrency: Annotated[int, Meta(ge=1, le=1000)] = 16  # deliveries at once per worker
    queue: Count = 1000  # notifications waiting per worker; full: reading events pauses
    batch: Count = 200  # events per read
    attempts: Annotated[int, Meta(ge=1, le=100)] = 5  # per delivery (5xx, 429, no answer)
    backoff_s: Seconds = 1.0  # first retry delay, doubled per attempt
    backoff_max_s: Seconds = 30.0
    timeout_s: Seconds = 10.0  # per HTTP request
    claim_idle_s: Seconds = 300.0  # a dead worker's unsent notifications are taken over


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    redis: RedisSettings = RedisSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    worker: WorkerSettings = WorkerSettings()
    archiver: ArchiverSettings = ArchiverSettings()
    api: ApiSettings = ApiSettings()
    metrics: MetricsSettings = MetricsSettings()
    alerts: AlertSettings = AlertSettings()
    notify: NotifySettings = NotifySettings()

    def __post_init__(self) -> None:
        w, s = self.worker, self.scheduler
        _check(w.block_s < self.redis.socket_timeout_s, "worker.block_s",
               "must be below", "redis.socket_timeout_s", self)
        _check(w.lease_s > w.heartbeat_s, "worker.lease_s", "must exceed", "worker.heartbeat_s",
               self)
        # A worker extends its leases every lease_s/3, between reads blocking up to block_s.
        _check(_ms(w.lease_s) > 2 * _ms(w.block_s), "worker.lease_s", "must exceed 2 x",
               "worker.block_s", self)
        # A scheduler renews its shard leases every lease_s/3, between sleeps of up to
        # max_sleep_s: a longer sleep lets its leases lapse and shards flap between owners.
        _check(_ms(s.lease_s) >= 3 * _ms(s.max_sleep_s), "scheduler.lease_s", "must be >= 3 x",
               "scheduler.max_sleep_s", self)
        for shard in s.shards or []:
            _check(shard < self.redis.shards, "scheduler.shards", "must all be below",
                   "redis.shards", self)
        # An archiver acks a batch only after committing it (up to flush_s later): claiming
        # sooner would take a live archiver's events.
        _check(self.archiver.claim_idle_s > self.archiver.flush_s, "archiver.claim_idle_s",
               "must exceed", "archiver.flush_s", self)
        # A live notifier may spend this long on one delivery: claiming sooner sends twice.
        n = self.notify
        _check(n.claim_idle_s > n.attempts * (n.timeout_s + n.backoff_max_s),
               "notify.claim_idle_s", "must exceed notify.attempts x (notify.timeout_s +",
               "notify.backoff_max_s)", self)

    @classmethod
    def from_env(
        cls,
        environ: typing.Mapping[str, str] | None = None,
        env_file: str | Path | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> Settings:
        env: dict[str, str] = {}
        if env_file is not None and Path(env_file).exists():
            env.update(_read_env_file(Path(env_file)))
        env.update(os.environ if environ is None else environ)
        tree: dict[str, Any] = {}
        sources: dict[tuple[str, str], str] = {}
        for name, value in env.items():
            if not name.startswith("RSCHED_") or name.startswith(IGNORED_PREFIX):
                continue
            section, field = _known(name)
            tree.setdefault(section, {})[field] = _parse(section, field, value)
            sources[section, field] = f"{name}={value}"
        for dotted, value in (overrides or {}).items():
            section, _, field = dotted.partition(".")
            tree.setdefault(section, {})[field] = value
            sources[section, field] = f"{dotted}={value}"
        try:
            return msgspec.convert(tree, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise ConfigError(_explain(str(exc), sources)) from None


def _ms(seconds: float) -> int:  # as the components use it (and 0.6 >= 3 x 0.2 holds)
    return round(seconds * 1000)


def _check(ok: bool, left: str, relation: str, right: str, s: Settings) -> None:
    if not ok:
        raise ConfigError(f"{_show(left, s)}: {relation} {_show(right, s)}")


def _show(dotted: str, s: Settings) -> str:
    section, _, field = dotted.partition(".")
    return f"{var(section, field)}={getattr(getattr(s, section), field)}"


def _known(name: str) -> tuple[str, str]:
    """(section, field) of a settings variable; ConfigError naming the closest one else."""
    section, _, field = name[len("RSCHED_"):].lower().partition("__")
    if field in _FIELDS.get(section, ()):
        return section, field
    close = difflib.get_close_matches(name.upper(), VARIABLES, n=1, cutoff=0.8)
    hint = f"did you mean {close[0]}?" if close else "see `rsched --help` and the README"
    raise ConfigError(f"{name}: unknown setting ({hint})")


def _explain(message: str, sources: dict[tuple[str, str], str]) -> str:
    """msgspec's "Expected `int` >= 1 - at `$.archiver.retention_days`" as
    "RSCHED_ARCHIVER__RETENTION_DAYS=-3: must be >= 1"."""
    what, _, where = message.rpartition(" - at ")
    path = re.findall(r"\w+", where.replace("$", ""))
    key = (path[0], path[1]) if len(path) >= 2 else ("", "")
    label = sources.get(key) or (var(*key) if all(key) else where.strip("`") or "settings")
    if m := re.fullmatch(r"Expected `(\w+)`, got `\w+`", what):
        what = f"must be {'an' if m[1][0] in 'aeiou' else 'a'} {m[1]}"
    elif m := re.fullmatch(r"Expected `\w+` matching regex (.*)", what):
        what = f"must match {m[1]}"
    elif m := re.fullmatch(r"Expected `\w+` (.*)", what):
        what = f"must be {m[1]}"
    return f"{label}: {what}"


def _parse(section: str, field: str, value: str) -> Any:
    # List fields are comma-separated; everything else is left for msgspec to coerce.
    hint = str(typing.get_type_hints(_SECTIONS[section]).get(field, ""))
    return [v for v in value.split(",") if v] if "list[" in hint else value


def _read_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


_SECTIONS: dict[str, type[msgspec.Struct]] = {
    "redis": RedisSettings, "scheduler": SchedulerSettings, "worker": WorkerSettings,
    "archiver": ArchiverSettings, "api": ApiSettings, "metrics": MetricsSettings,
    "alerts": AlertSettings, "notify": NotifySettings,
}
_FIELDS = {name: cls.__struct_fields__ for name, cls in _SECTIONS.items()}
VARIABLES = [var(section, field) for section, fields in _FIELDS.items() for field in fields]
