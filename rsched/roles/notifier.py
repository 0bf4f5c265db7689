"""The notifier: failure alerts and completion webhooks, sent by workers off the hot path.

Owns: reading run endings from the events streams through the notifiers' consumer group
(engine.notify), choosing what each one sends (an alert, through its job's alert gate in
Redis; the job's completion webhook), a bounded queue drained by a few delivery tasks on
one shared httpx client, and acking an event once everything it caused is settled
(delivered or given up on). Must not: run tasks or record run outcomes (the worker does:
nothing here is on its path), format keys, or retry by itself (delivery.py does).

At least once: an event is acked only when its notifications are settled, so a worker
that dies with some unsent leaves them pending in the group, and another notifier takes
them over after ``notify.claim_idle_s``. A webhook already recorded on its run is not
sent again; receivers dedupe the rest on ``X-Rsched-Delivery`` (docs/tasks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

from rsched.engine import Engine
from rsched.errors import Code
from rsched.models import TERMINAL, HookOn, RunStatus, Webhook
from rsched.roles.delivery import Delivery, Poster, secret_key
from rsched.settings import AlertSettings, NotifySettings

log = logging.getLogger(__name__)
alert_log = logging.getLogger("rsched.alerts")
FAILED = frozenset({RunStatus.FAILED, RunStatus.DEAD, RunStatus.TIMED_OUT})
HOOK_ON = {HookOn.SUCCESS: frozenset({RunStatus.SUCCEEDED}), HookOn.FAILURE: FAILED,
           HookOn.ALWAYS: TERMINAL}
NOTICED = TERMINAL | {RunStatus.RETRYING}  # run events a notifier looks at
_webhook = msgspec.json.Decoder(Webhook)
_json = msgspec.json.Encoder()
EventId = tuple[int, str]


@dataclass(frozen=True, slots=True)
class Note:
    """One HTTP notification to send."""

    kind: str  # alert | webhook
    url: str
    body: bytes
    headers: dict[str, str]
    run_id: str = ""
    key_name: str | None = None  # a webhook's signing key, by name


@dataclass(frozen=True, slots=True)
class Pending:
    event: EventId
    notes: list[Note]


class Notifier:
    def __init__(self, engine: Engine, cfg: NotifySettings, alerts: AlertSettings,
                 consumer: str, *, block_s: float = 1.0,
                 http: httpx.AsyncClient | None = None) -> None:
        self.engine = engine
        self.cfg = cfg
        self.alerts = alerts
        self.consumer = consumer
        self.block_ms = max(1, round(block_s * 1000))
        self.http = http or httpx.AsyncClient(
            follow_redirects=False,
            limits=httpx.Limits(max_connections=cfg.concurrency))
        self.poster = Poster(self.http, cfg)
        self.queue: asyncio.Queue[Pending] = asyncio.Queue(cfg.queue)
        self.counts: Counter[str] = Counter()  # alerts, alerts_held, webhooks, ... sent
        self._stopping = asyncio.Event()
        self._grace_s = 0.0

    async def run(self) -> None:
        await self.engine.notify.ensure_groups()
        senders = [asyncio.create_task(self._send_loop()) for _ in range(self.cfg.concurrency)]
        try:
            await self._read_loop()
            # stopping: what is queued gets the grace period to go out (the senders run
            # until then; cancelling them first would leave queue.join() waiting forever)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.queue.join(), self._grace_s)
        finally:
            for t in senders:
                t.cancel()
            await asyncio.gather(*senders, return_exceptions=True)
            await self.http.aclose()

    async def stop(self, grace_s: float) -> None:
        """Stop reading; notifications queued get ``grace_s`` to go out (run() waits for
        them), the rest stay pending for another notifier."""
        self._grace_s = grace_s
        self._stopping.set()

    async def _read_loop(self) -> None:
        next_claim = 0.0
        while not self._stopping.is_set():
            try:
                if time.monotonic() >= next_claim:
                    next_claim = time.monotonic() + self.cfg.claim_idle_s / 4
                    events = await self.engine.notify.claim(self.consumer,
                                                            _ms(self.cfg.claim_idle_s),
                                                            self.cfg.batch)
                else:
                    events = await self.engine.notify.read(self.consumer, self.cfg.batch,
                                                           self.block_ms)
                await self.dispatch(events)
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away: the worker keeps running
                log.warning("notifier: %s: %s; reading again in 1s", type(exc).__name__, exc)
                await asyncio.sleep(1.0)
        with contextlib.suppress(asyncio.TimeoutError):  # what is queued goes out first
            await asyncio.wait_for(self.queue.join(), 1.0)

    async def dispatch(self, events: list[tuple[int, str, dict[str, Any]]]) -> None:
        """Queue what each event causes (waiting while the queue is full); ack the rest."""
        ends = [e for _, _, e in events if _noticed(e)]
        jobs = await self.engine.notify.job_hooks([e["job_id"] for e in ends]) if ends else {}
        settled: list[EventId] = []
        for shard, eid, e in events:
            notes = await self._notes(e, jobs.get(e.get("job_id", ""), {})) \
                if _noticed(e) else []
            if notes:
                await self.queue.put(Pending((shard, eid), notes))
            else:
                settled.append((shard, eid))
        await self.engine.notify.ack(settled)

    async def _notes(self, e: dict[str, Any], job: dict[str, Any]) -> list[Note]:
        status = RunStatus(e["status"])
        notes: list[Note] = []
        if status in FAILED or status is RunStatus.RETRYING:
            alert = await self._alert(e, job, status)
            if alert is not None:
                notes.append(alert)
        hook = _webhook.decode(job["webhook"]) if "webhook" in job else None
        if hook is not None and status in HOOK_ON[hook.on]:
            body = _json.encode(_payload(e, job, f"run.{status.value}"))
            notes.append(Note("webhook", hook.url, body, {
                "X-Rsched-Event": f"run.{status.value}",
                "X-Rsched-Delivery": f"{e['run_id']}.{status.value}"},
                run_id=e["run_id"], key_name=hook.secret))
        return notes

    async def _alert(self, e: dict[str, Any], job: dict[str, Any],
                     status: RunStatus) -> Note | None:
        """Count the failure in the job's alert window; log it and return the alert to
        POST when the gate lets one through."""
        a = self.alerts
        if not (a.log or a.webhook_url):
            return None
        window_ms = _ms(a.window_s)
        code, fails, held = await self.engine.notify.note_failure(
            e["job_id"], e.get("at_ms", 0), window_ms=window_ms, threshold=a.threshold,
            per_window=a.per_window, final=status in FAILED)
        if code == Code.DEFERRED:
            self.counts["alerts_held"] += 1
        if code != Code.DONE:
            return None
        reason = "run_failed" if status in FAILED else "failure_threshold"
        doc = {**_payload(e, job, "alert"), "reason": reason, "failures_in_window": fails,
               "window_s": a.window_s, "suppressed": held}
        self.counts["alerts"] += 1
        if a.log:
            alert_log.warning("ALERT %s: job %s (%s) run %s %s; %d failures in %gs, %d alerts"
                              " held back: %s", reason, e["job_id"], job.get("name") or "-",
                              e.get("run_id"), status.value, fails, a.window_s, held,
                              (e.get("error") or "").split("\n", 1)[0][:200])
        if not a.webhook_url:
            return None
        return Note("alert", a.webhook_url, _json.encode(doc), {
            "X-Rsched-Event": "alert", "X-Rsched-Delivery": f"{e['run_id']}.alert"})

    async def _send_loop(self) -> None:
        while True:
            pending = await self.queue.get()
            try:
                for note in pending.notes:
                    await self._send(note)
                await self.engine.notify.ack([pending.event])
            except Exception as exc:  # noqa: BLE001 - left pending: claimed again later
                log.warning("notifier: event %s left pending (%s: %s)", pending.event[1],
                            type(exc).__name__, exc)
            finally:
                self.queue.task_done()

    async def _send(self, note: Note) -> None:
        if note.kind == "alert":
            d = await self.poster.post(note.url, note.body, note.headers)
            self._count("alert_posts", d)
            return
        if await self.engine.notify.webhook_status(note.run_id) is not None:
            return  # sent before (this event was taken over from a notifier that died)
        key = secret_key(note.key_name) if note.key_name else None
        if note.key_name and key is None:
            log.error("webhook of run %s not sent: signing key %s is not in this worker's"
                      " environment", note.run_id, note.key_name)
            d = Delivery("failed", 0, 0)
        else:
            d = await self.poster.post(note.url, note.body, note.headers, key)
        self._count("webhooks", d)
        await self.engine.notify.record_hook(note.run_id, d.status, d.attempts, d.code)

    def _count(self, what: str, d: Delivery) -> None:
        self.counts[what if d.status == "delivered" else f"{what}_failed"] += 1
        if d.status != "delivered":
            log.warning("%s to %s: gave up after %d attempt(s) (last status %s)",
                        what, "receiver", d.attempts, d.code or "no answer")


def _noticed(e: dict[str, Any]) -> bool:
    return e.get("kind") == "run" and e.get("status") in NOTICED and "job_id" in e


def _payload(e: dict[str, Any], job: dict[str, Any], event: str) -> dict[str, Any]:
    return {"event": event, "run_id": e.get("run_id"), "job_id": e.get("job_id"),
            "job_name": job.get("name"), "tenant": job.get("tenant"),
            "queue": job.get("queue"), "status": e.get("status"),
            "attempt": e.get("attempt"), "slot_ms": e.get("slot_ms"),
            "finished_ms": e.get("finished_ms") or e.get("at_ms"),
            "error": e.get("error"), "result": e.get("result")}


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
