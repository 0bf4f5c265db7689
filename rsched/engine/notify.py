"""The engine's side of notifications: the notifiers' feed of run endings, alert gates.

Owns: the notifiers' consumer group over the events streams (read, ack, take over),
the jobs' webhook fields read for a batch of events, each job's failure alert window
(note_failure.lua) and the delivery record on a run (record_hook.lua). Must not: decide
what to send or send it (rsched/roles/notifier.py does), nor write job or run state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rsched.engine.core import Part
from rsched.engine.keys import NOTIFIER_GROUP
from rsched.engine.schema import EVENT, JOB
from rsched.engine.types import job_of_run, text
from rsched.errors import Code

Event = tuple[int, str, dict[str, Any]]  # (shard, entry id, EVENT fields by Python name)
_HOOK_FIELDS = ("webhook", "tenant", "queue", "name")


class Notify(Part):
    async def ensure_groups(self) -> None:
        """The notifiers' group on every events stream, from new events on: a deployment
        that starts notifying does not replay its history."""
        for k in self.shard_keys:
            await self.core.ensure_group(k.events, NOTIFIER_GROUP, start="$")

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Event]:
        """New events of every shard for ``consumer``, blocking up to ``block_ms``."""
        streams = {k.events: ">" for k in self.shard_keys}
        reply = await self.redis.xreadgroup(NOTIFIER_GROUP, consumer, streams, count=count,
                                            block=block_ms)
        return self._events(reply or [])

    async def claim(self, consumer: str, min_idle_ms: int, count: int) -> list[Event]:
        """Take over events a dead notifier read but never acked (at least once)."""
        out: list[Event] = []
        for k in self.shard_keys:
            reply = await self.redis.xautoclaim(k.events, NOTIFIER_GROUP, consumer,
                                                min_idle_ms, "0-0", count=count)
            out += self._events([(k.events, reply[1])])
        return out

    def _events(self, reply: Sequence[Any]) -> list[Event]:
        shard_of = {k.events: k.shard for k in self.shard_keys}
        # an entry trimmed while pending comes back without fields: an empty event
        return [(shard_of[text(stream)], text(eid), EVENT.decode(f or {}))
                for stream, entries in reply for eid, f in entries]

    async def ack(self, ids: Sequence[tuple[int, str]]) -> None:
        by_shard: dict[int, list[str]] = {}
        for shard, eid in ids:
            by_shard.setdefault(shard, []).append(eid)
        if by_shard:
            await self.core.raw([("XACK", self.shard_keys[s].events, NOTIFIER_GROUP, *eids)
                                 for s, eids in by_shard.items()])

    async def job_hooks(self, job_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Each job's webhook blob, tenant, queue and name (JOB fields by Python name), in
        one round trip; a job whose hash is gone maps to {}."""
        ids = list(dict.fromkeys(job_ids))
        pipe = self.redis.pipeline(transaction=False)
        wires = [JOB.wire(n) for n in _HOOK_FIELDS]
        for job_id in ids:
            pipe.hmget(self.core.keys_for(job_id).job(job_id), wires)
        rows = await pipe.execute()
        return {j: JOB.decode(dict(zip(wires, row, strict=True)))
                for j, row in zip(ids, rows, strict=True)}

    async def note_failure(self, job_id: str, now_ms: int, *, window_ms: int, threshold: int,
                           per_window: int, final: bool) -> tuple[Code, int, int]:
        """Count a failed attempt in the job's alert window: (OK nothing to send | DONE
        send | DEFERRED held back, failures in the window, alerts held back before)."""
        k = self.core.keys_for(job_id)
        code, fails, held = await self.core.call(
            "note_failure", {"gate": k.alert_gate(job_id)},
            {"now_ms": now_ms, "window_ms": window_ms, "threshold": threshold,
             "per_window": per_window, "final": "1" if final else "0"})
        return Code(int(code)), int(fails), int(held)

    async def webhook_status(self, run_id: str) -> str | None:
        """The run's recorded webhook delivery (None: none yet, or the run is gone)."""
        k = self.core.keys_for(job_of_run(run_id))
        raw = await self.redis.hget(k.run(run_id), "hook")
        return None if raw is None else text(raw)

    async def record_hook(self, run_id: str, status: str, attempts: int, http_code: int
                          ) -> bool:
        """Record a webhook delivery on its run; False when the run's hash expired."""
        k = self.core.keys_for(job_of_run(run_id))
        res = await self.core.call("record_hook", {"run": k.run(run_id)},
                                   {"status": status, "attempts": attempts, "code": http_code})
        return int(res) == Code.DONE
