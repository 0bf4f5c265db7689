"""The data schema Lua and Python share: every hash field and stream-entry field, once.

Owns: the wire name, Python name, type, meaning and writers of each field of the job and
run hashes and of queue, events and dead-letter stream entries, and decoding raw Redis
replies through them. Must not: talk to Redis or know key names (keys.py does).

Streams (queue entries, events, dead letters) share one short vocabulary: an entry is
copied per event, so bytes matter, and one meaning has one spelling in every stream
(``att`` is the attempt in all three). Hashes are stored once per job or run and keep
their longer names. tests/unit/lua/test_schema.py parses every ``lua/*.lua`` and fails
on a field written or read there that is not declared here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Field:
    wire: str  # the name in Redis
    name: str  # the name in Python
    kind: type  # int, str or bytes: how decode() reads it
    meaning: str
    writers: str  # the scripts (or code) that write it


class Record:
    """The fields of one hash or stream entry kind."""

    def __init__(self, where: str, fields: list[Field], *,
                 legacy: Mapping[str, str] | None = None) -> None:
        self.where = where
        self.fields = tuple(fields)
        self.by_name = {f.name: f for f in fields}
        self.by_wire = {f.wire: f for f in fields}
        # older spellings still read (entries written before a rename): old wire -> name
        self.legacy = dict(legacy or {})

    @property
    def wires(self) -> frozenset[str]:
        return frozenset(self.by_wire) | frozenset(self.legacy)

    def wire(self, name: str) -> str:
        return self.by_name[name].wire

    def raw(self, name: str) -> bytes:
        """The wire name as bytes, for lookups in raw replies."""
        return self.by_name[name].wire.encode()

    def decode(self, raw: Mapping[Any, Any]) -> dict[str, Any]:
        """Raw fields (bytes or str keys) -> {python name: typed value}; empty values and
        unknown fields are left out."""
        out: dict[str, Any] = {}
        for k, v in raw.items():
            wire = k.decode() if isinstance(k, bytes) else k
            field = self.by_wire.get(wire)
            if field is None:
                legacy = self.legacy.get(wire)
                if legacy is None or legacy in out:
                    continue
                field = self.by_name[legacy]
            if v in (b"", "", None):
                continue
            out[field.name] = _typed(field.kind, v)
        return out


def _typed(kind: type, v: Any) -> Any:
    if kind is bytes:
        return v if isinstance(v, bytes) else str(v).encode()
    s = v.decode() if isinstance(v, bytes) else str(v)
    if kind is not int:
        return s
    try:
        return int(s)
    except ValueError:  # written by an older Lua as a float ("1.7e+12")
        return int(float(s))


F = Field

JOB = Record("job hash <job_prefix><job id>", [
    F("spec", "spec", bytes, "msgspec JobSpec blob (task, args, retry...); Lua never decodes it",
      "schedule_job, restore_job"),
    F("sched", "sched", bytes, "msgspec Trigger blob (the schedule)", "schedule_job, restore_job"),
    F("ver", "version", int, "bumped by every update; If-Match compares it",
      "schedule_job, restore_job"),
    F("queue", "queue", str, "queue its runs go to", "schedule_job, restore_job"),
    F("tenant", "tenant", str, "owner tenant", "schedule_job, restore_job"),
    F("max_att", "max_attempts", int, "attempts a run gets", "schedule_job, restore_job"),
    F("overlap", "overlap", str, "allow | forbid | replace: a slot while a run is active",
      "schedule_job, restore_job"),
    F("state", "state", str, "active | paused | done | cancelled",
      "schedule_job, pause_job, resume_job, cancel_job, fire_due, restore_job"),
    F("next", "next_ms", int, "next slot (epoch ms, before jitter); empty when none",
      "schedule_job, fire_due"),
    F("maxr", "max_runs", int, "the job is done once it has made this many runs (optional)",
      "schedule_job, restore_job"),
    F("conc", "concurrency", int, "runs of the job running at once, at most (optional)",
      "schedule_job, restore_job"),
    F("until", "paused_until_ms", int, "a paused job resumes at this instant (optional)",
      "pause_job, resume_job, fire_due"),
    F("prio", "priority", int, "0-9, higher drained first (optional; unset: the queue's "
      "default); its runs are queued in the lane <queue>!<prio>",
      "schedule_job, restore_job"),
    F("created", "created_ms", int, "creation time (epoch ms)", "schedule_job, restore_job"),
    F("updated", "updated_ms", int, "last definition change (epoch ms)", "schedule_job"),
    F("runs", "runs", int, "runs created so far; run ids are <job id>:<n>",
      "fire_due, run_now, restore_job"),
    F("cur", "last_run_id", str, "the latest run's id (overlap checks)", "fire_due, run_now"),
    F("last", "last_slot_ms", int, "the latest fired slot (epoch ms)", "fire_due, restore_job"),
    F("name", "name", str, "unique name within its tenant (optional; the claim is the "
      "tenant's names hash, claim_name)", "schedule_job, restore_job"),
    F("labels", "labels", bytes, "JSON dict[str, str] blob (optional)",
      "schedule_job, restore_job"),
    F("ukey", "unique_key", str, "the unique key it was created with (optional)",
      "schedule_job, restore_job"),
    F("hook", "webhook", bytes, "JSON Webhook blob: its completion webhook (optional)",
      "schedule_job, restore_job"),
])

RUN = Record("run hash <run_prefix><run id>", [
    F("job", "job_id", str, "the job", "fire_due, run_now, restore_run"),
    F("queue", "queue", str, "lane of its entry: the queue, or <queue>!<prio> for a job "
      "with an explicit priority", "fire_due, run_now, restore_run"),
    F("tenant", "tenant", str, "owner tenant", "fire_due, run_now, restore_run"),
    F("st", "status", str, "queued | running | retrying | succeeded | failed | dead | "
      "cancelled | timed_out", "every run script"),
    F("att", "attempt", int, "the fence: every outcome names it; reclaim and retry bump it",
      "fire_due, run_now, fail_run, reclaim_runs, restore_run"),
    F("max", "max_attempts", int, "attempts this run gets", "fire_due, run_now, restore_run"),
    F("slot", "slot_ms", int, "the scheduled instant it fires for (epoch ms)",
      "fire_due, run_now, restore_run"),
    F("enq", "enqueued_ms", int, "when its entry was added", "fire_due, run_now"),
    F("entry", "entry_id", str, "its current queue stream entry id", "fire_due, run_now"),
    F("start", "started_ms", int, "when the current attempt started",
      "start_runs, reclaim_runs"),
    F("worker", "worker", str, "consumer running the current attempt",
      "start_runs, reclaim_runs"),
    F("end", "finished_ms", int, "when it ended (or the attempt failed)",
      "complete_runs, fail_run, reclaim_runs, cancel_job, fire_due"),
    F("err", "error", str, "last error (capped)", "fail_run, reclaim_runs"),
    F("res", "result", str, "the handler's result (capped JSON)", "complete_runs"),
    F("cancel", "cancel_requested", str, "'1': cancel asked while running",
      "cancel_job, cancel_run, fire_due (overlap replace)"),
    F("lim", "concurrency", int, "its job's concurrency limit, copied at fire (optional): "
      "start_runs holds a slot of <run_prefix>held:<job id> while it runs",
      "fire_due, run_now"),
    F("hook", "webhook_status", str, "its completion webhook: delivered | failed (gave up)",
      "record_hook"),
    F("hook_att", "webhook_attempts", int, "delivery attempts of its webhook", "record_hook"),
    F("hook_code", "webhook_code", int, "the receiver's last HTTP status (0: no answer)",
      "record_hook"),
])

QUEUE_ENTRY = Record("queue stream entry <queue_prefix><queue>", [
    F("r", "run_id", str, "the run", "fire_due, run_now"),
    F("j", "job_id", str, "the job", "fire_due, run_now"),
    F("att", "attempt", int, "attempt this delivery is for", "fire_due, run_now"),
    F("slot", "slot_ms", int, "the run's slot (epoch ms)", "fire_due, run_now"),
    F("spec", "spec", bytes, "the job's JobSpec blob at fire time", "fire_due, run_now"),
    F("nb", "not_before_ms", int, "fired ahead of its due score: workers start it at this "
      "time (absent: due when fired)", "fire_due"),
], legacy={"a": "attempt", "s": "slot_ms", "p": "spec"})

EVENT = Record("events stream entry <tag>:events (archived to PostgreSQL)", [
    F("k", "kind", str, "job | run | skip", "every script that emits an event"),
    F("t", "at_ms", int, "when it happened (epoch ms)", "every event"),
    F("j", "job_id", str, "the job", "every event"),
    F("r", "run_id", str, "the run (run events)", "run events"),
    F("st", "status", str, "the job's state (job events) or the run's status (run events)",
      "job and run events"),
    F("att", "attempt", int, "the run's attempt after the transition (lua/README.md rule)",
      "run events"),
    F("q", "queue", str, "queue", "schedule_job, fire_due, run_now"),
    F("tn", "tenant", str, "tenant", "schedule_job, fire_due, run_now"),
    F("slot", "slot_ms", int, "the run's slot: the archive's partition key", "run events"),
    F("enq", "enqueued_ms", int, "entry added", "fire_due, run_now"),
    F("start", "started_ms", int, "attempt started", "start_runs, reclaim_runs"),
    F("end", "finished_ms", int, "ended / attempt failed", "outcome events"),
    F("w", "worker", str, "consumer", "start_runs, reclaim_runs"),
    F("err", "error", str, "error text", "fail_run, reclaim_runs, cancel_job"),
    F("res", "result", str, "result text", "complete_runs"),
    F("why", "why", str, "run_now | reclaimed | replaced | limited | queue_limit | "
      "rate_limit (run events); overlap | misfire | paused (skips); resumed (job events)",
      "run_now, reclaim_runs, fire_due, start_runs, defer_runs"),
    F("until", "paused_until_ms", int, "a timed pause's resume instant", "pause_job"),
    F("retry", "retry_at_ms", int, "when a retry (or a deferred start) is due",
      "fail_run, start_runs, defer_runs"),
    F("n", "count", int, "slots a skip stands for", "fire_due"),
    F("ver", "version", int, "job version", "schedule_job"),
    F("spec", "spec", bytes, "JobSpec blob", "schedule_job"),
    F("sched", "sched", bytes, "Trigger blob", "schedule_job"),
    F("next", "next_ms", int, "next fire; -1 none", "schedule_job"),
    F("ov", "overlap", str, "overlap policy", "schedule_job"),
    F("max", "max_attempts", int, "attempts a run gets", "schedule_job"),
    F("maxr", "max_runs", int, "the job's limit of runs in all; empty: none", "schedule_job"),
    F("conc", "concurrency", int, "the job's runs at once, at most; empty: no limit",
      "schedule_job"),
    F("prio", "priority", int, "the job's lane 0-9; empty: the queue's default",
      "schedule_job"),
    F("nm", "name", str, "the job's name; empty: none", "schedule_job"),
    F("lb", "labels", bytes, "JSON labels blob; empty: none", "schedule_job"),
    F("uk", "unique_key", str, "the unique key; empty on updates (fixed at creation)",
      "schedule_job"),
    F("hk", "webhook", bytes, "JSON Webhook blob; empty: none", "schedule_job"),
])

DEAD_LETTER = Record("dead-letter stream entry <tag>:dead", [
    F("r", "run_id", str, "the run", "fail_run, reclaim_runs"),
    F("j", "job_id", str, "the job", "fail_run, reclaim_runs"),
    F("q", "queue", str, "its queue", "fail_run, reclaim_runs"),
    F("st", "status", str, "failed | dead | timed_out", "fail_run, reclaim_runs"),
    F("att", "attempt", int, "the last attempt", "fail_run, reclaim_runs"),
    F("err", "error", str, "the last error", "fail_run, reclaim_runs"),
    F("t", "at_ms", int, "when it was dead-lettered", "fail_run, reclaim_runs"),
], legacy={"a": "attempt", "e": "error"})

RATE_BUCKET = Record("API key token bucket <prefix>:{k:<key id>}:bucket", [
    F("tokens", "tokens", str, "tokens left (a float as text)", "take_token"),
    F("ts", "refilled_ms", int, "last refill (epoch ms)", "take_token"),
])

ALERT_GATE = Record("failure alert gate of a job <tag>:alert:<job id>", [
    F("from", "window_from_ms", int, "start of the current alert window (epoch ms)",
      "note_failure"),
    F("fails", "failures", int, "failed attempts in the current window", "note_failure"),
    F("sent", "sent", int, "alerts sent in the current window", "note_failure"),
    F("held", "held", int, "alerts held back since the last one sent", "note_failure"),
])

QUEUE_LIMITS = Record("queue limits hash <prefix>:{q:<queue>}:limits", [
    F("conc", "concurrency", int, "runs of the queue running at once, at most (optional)",
      "Client.set_queue_limits (HSET)"),
    F("rate", "rate", int, "starts per period, at most (optional)",
      "Client.set_queue_limits (HSET)"),
    F("per", "period_ms", int, "the rate limit's period, ms", "Client.set_queue_limits (HSET)"),
    F("burst", "burst", int, "starts allowed at once by the rate limit",
      "Client.set_queue_limits (HSET)"),
    F("prio", "priority", int, "the level of the queue's jobs that set no priority",
      "Client.set_queue_limits (HSET)"),
])

RECORDS = (JOB, RUN, QUEUE_ENTRY, EVENT, DEAD_LETTER, RATE_BUCKET, ALERT_GATE, QUEUE_LIMITS)
