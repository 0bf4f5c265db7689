"""Every Redis key name rsched uses, and the job -> shard mapping.

Owns: key formatting and shard arithmetic. Must not: talk to Redis.
No other module formats a key; scripts derive per-id keys from the tagged
prefixes built here (passed in ARGV), so every key one script touches shares
the shard's hash tag and the scripts run unchanged on Redis Cluster.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cached_property

from rsched.names import validate_lane, validate_queue

# Consumer group every worker of a queue reads through.
WORKER_GROUP = "workers"
# Consumer group archivers read the events streams through.
ARCHIVER_GROUP = "archivers"
# The notifiers' consumer group on the events streams (alerts and webhooks, at least once)
NOTIFIER_GROUP = "notifiers"
# Due-index members with this prefix are retries of a run, not jobs.
RETRY_PREFIX = "r:"
# Due-index members with this prefix resume a job paused until their score.
RESUME_PREFIX = "u:"



def shard_of(job_id: str, shards: int) -> int:
    """The shard of a job: a pure function of its id, stable across processes."""
    return zlib.crc32(job_id.encode()) % shards


@dataclass(frozen=True)
class GlobalKeys:
    """Untagged keys; only ever used by single-key commands, never in a script."""

    prefix: str

    @property
    def meta(self) -> str:  # HASH  shards -> shard count fixed at creation
        return f"{self.prefix}:meta"

    @property
    def queues(self) -> str:  # SET   queue names ever scheduled into
        return f"{self.prefix}:queues"

    @property
    def tasks(self) -> str:  # SET   task names some worker has registered
        return f"{self.prefix}:tasks"

    @property
    def workers(self) -> str:  # ZSET  worker id -> last heartbeat (ms)
        return f"{self.prefix}:workers"

    @property
    def schedulers(self) -> str:  # ZSET  scheduler owner id -> last heartbeat (ms)
        return f"{self.prefix}:schedulers"

    @property
    def wake_channel(self) -> str:  # PUBSUB  "<shard> <score>": an earlier due entry exists
        return f"{self.prefix}:wake"

    @property
    def cancel_channel(self) -> str:  # PUBSUB  run id whose running attempt must stop
        return f"{self.prefix}:cancel"


@dataclass(frozen=True)
class ShardKeys:
    """Keys of one shard; all share the hash tag ``{sNN}``."""

    prefix: str
    shard: int

    @cached_property
    def tag(self) -> str:
        return f"{self.prefix}:{{s{self.shard:02d}}}"

    @cached_property
    def due(self) -> str:  # ZSET  job id | "r:<run id>" -> next fire (epoch ms)
        return f"{self.tag}:due"

    @cached_property
    def jobs(self) -> str:  # ZSET  job id -> creation (epoch ms); the listing index
        return f"{self.tag}:jobs"

    @cached_property
    def job_prefix(self) -> str:  # HASH per job: <job_prefix><job id>, fields in engine/schema.py
        return f"{self.tag}:job:"

    def job(self, job_id: str) -> str:
        return self.job_prefix + job_id

    @cached_property
    def run_prefix(self) -> str:  # HASH per run: <run_prefix><run id>, fields in engine/schema.py
        return f"{self.tag}:run:"

    def run(self, run_id: str) -> str:
        return self.run_prefix + run_id

    @cached_property
    def queue_prefix(self) -> str:  # STREAM per queue: <queue_prefix><queue>, entries = runs
        return f"{self.tag}:q:"

    def queue(self, queue: str) -> str:  # a queue's stream, or one of its priority lanes
        return self.queue_prefix + validate_lane(queue)

    @cached_property
    def held_prefix(self) -> str:  # ZSET per job: <held_prefix><job id>, run id -> start ms:
        return f"{self.tag}:held:"  # the job's concurrency slots taken (start_runs)

    def held(self, job_id: str) -> str:
        return self.held_prefix + job_id

    def alert_gate(self, job_id: str) -> str:  # HASH  schema.ALERT_GATE: a job's alert window
        return f"{self.tag}:alert:{job_id}"

    @cached_property
    def events(self) -> str:  # STREAM  every job and run transition (archived to PostgreSQL)
        return f"{self.tag}:events"

    @cached_property
    def dead(self) -> str:  # STREAM  dead-lettered runs with their last error
        return f"{self.tag}:dead"

    @cached_property
    def lease(self) -> str:  # STRING  scheduler owner id, PX = lease time
        return f"{self.tag}:lease"

    @cached_property
    def fence(self) -> str:  # STRING  counter bumped on every lease take-over (fencing token)
        return f"{self.tag}:fence"



@dataclass(frozen=True)
class QueueKeys:
    """Queue-wide keys (limits and priorities span every shard); all share the tag
    ``{q:<queue>}``: one slot per queue, touched by take_queue_slots and single-key commands."""

    prefix: str
    queue: str

    @cached_property
    def tag(self) -> str:
        return f"{self.prefix}:{{q:{validate_queue(self.queue)}}}"

    @cached_property
    def limits(self) -> str:  # HASH  schema.QUEUE_LIMITS: concurrency, rate, default priority
        return f"{self.tag}:limits"

    @cached_property
    def levels(self) -> str:  # SET   explicit job priorities used in the queue (its lanes)
        return f"{self.tag}:levels"

    @cached_property
    def held(self) -> str:  # ZSET  "<run id>/<attempt>" -> lease deadline ms: slots taken
        return f"{self.tag}:held"

    @cached_property
    def rate(self) -> str:  # STRING  rate limit: theoretical arrival time, ms (GCRA)
        return f"{self.tag}:rate"


@dataclass(frozen=True)
class TenantKeys:
    """Keys of one tenant (the REST API's isolation unit); all share the tag ``{t:<tenant>}``,
    so the scripts that touch them (claim_name) stay in one slot."""

    prefix: str
    tenant: str

    @cached_property
    def tag(self) -> str:
        return f"{self.prefix}:{{t:{self.tenant}}}"

    @cached_property
    def jobs(self) -> str:  # ZSET  "<created ms, 13 digits>:<job id>", score 0 (lex order)
        return f"{self.tag}:jobs"

    @cached_property
    def names(self) -> str:  # HASH  unique job name -> job id
        return f"{self.tag}:names"

    @cached_property
    def unique(self) -> str:  # HASH  unique key -> "<job id> <claimed ms>" (claim_name CAS)
        return f"{self.tag}:unique"

    @cached_property
    def queues(self) -> str:  # SET   queue names this tenant's jobs use
        return f"{self.tag}:queues"

    def idempotency(self, key_id: str, idem_key: str) -> str:  # STRING  stored response
        return f"{self.tag}:idem:{key_id}:{idem_key}"


@dataclass(frozen=True)
class AccessKeys:
    """Keys of API access control; single-key commands and single-key scripts only."""

    prefix: str

    @property
    def api_keys(self) -> str:  # HASH  key id -> ApiKey record (JSON; sha256 of the secret)
        return f"{self.prefix}:apikeys"

    def bucket(self, key_id: str) -> str:  # HASH  tokens, ts_ms: token bucket of one API key
        return f"{self.prefix}:{{k:{key_id}}}:bucket"
