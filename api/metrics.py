"""GET /metrics: the deployment's figures that live in Redis, plus this process's own.

Owns: the Prometheus families read from Redis at scrape time (jobs by state, due, queue
depth/pending/oldest/rate, dead letters, archive lag, shard ownership, scheduler and worker
heartbeats), their cache (``metrics.cache_s``) and the text exposition. Must not: keep
counters on the request path, or reach Redis except through the engine's parts.
Deployment-wide figures: an admin key (of any tenant) or dev mode.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.http import ApiState, authorize, state
from api.problems import problem
from rsched.models import Role


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def _gauge(name: str, doc: str, value: float | None = None,
           labels: list[str] | None = None,
           rows: Iterable[tuple[list[str], float]] = ()) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, value=value, labels=labels)
    for values, v in rows:
        g.add_metric(values, v)
    return g


async def _job_families(st: ApiState) -> list[Metric]:
    cap = st.settings.metrics.state_scan_max
    counts, examined, indexed = await st.engine.query.job_states(cap)
    return [
        _gauge("rsched_jobs", "Jobs by state (over the first metrics.state_scan_max "
               "indexed; 'gone' = expired)", labels=["state"],
               rows=[([s], n) for s, n in sorted(counts.items())]),
        _gauge("rsched_jobs_indexed", "Jobs in the shards' listing indexes", indexed),
        _gauge("rsched_jobs_state_examined", "Jobs examined to count rsched_jobs", examined),
        _gauge("rsched_jobs_due", "Entries in the due sets (jobs with a next fire, retries)",
               await st.engine.query.due_count()),
    ]


async def _queue_families(st: ApiState, queues: list[str], now: int) -> list[Metric]:
    figs = await st.engine.catalog.queue_figures(queues, now)
    by = ["queue"]
    return [
        _gauge("rsched_queue_depth", "Entries in the queue's streams", labels=by,
               rows=[([f.name], f.depth) for f in figs]),
        _gauge("rsched_queue_pending", "Entries delivered to a worker, not yet acked",
               labels=by, rows=[([f.name], f.pending) for f in figs]),
        _gauge("rsched_queue_oldest_pending_seconds", "Age of the oldest pending entry",
               labels=by, rows=[([f.name], (f.oldest_age_ms or 0) / 1000) for f in figs]),
        _gauge("rsched_queue_added_last_minute", "Entries added over the last minute",
               labels=by, rows=[([f.name], f.per_min) for f in figs]),
    ]


def _liveness(kind: str, ages_ms: dict[str, int], live_ms: float) -> list[Metric]:
    return [
        _gauge(f"rsched_{kind}_heartbeat_age_seconds", f"Time since each {kind}'s heartbeat",
               labels=[kind], rows=[([k], ms / 1000) for k, ms in sorted(ages_ms.items())]),
        _gauge(f"rsched_{kind}s_live", f"{kind.capitalize()}s with a heartbeat within 3 "
               "periods", sum(1 for ms in ages_ms.values() if ms <= live_ms)),
    ]


async def collect(st: ApiState) -> list[Metric]:
    s = await st.client.status()
    owners = await st.engine.query.shard_owners()
    out = await _job_families(st)
    out += await _queue_families(st, sorted(s.queues), s.now_ms)
    out += [
        _gauge("rsched_dead_letters", "Dead letters held", await st.engine.query.dead_count()),
        _gauge("rsched_archive_lag_seconds", "Age of the oldest event not yet archived",
               s.archive_lag_ms / 1000),
        _gauge("rsched_events_pending", "Events in the shards' event streams", s.events),
        _gauge("rsched_shard_owner", "1 per shard and the scheduler leasing it",
               labels=["shard", "owner"],
               rows=[([str(i), o], 1) for i, o in enumerate(owners) if o is not None]),
        _gauge("rsched_shards_unowned", "Shards no scheduler leases (0 with static shards "
               "is not a problem)", sum(1 for o in owners if o is None)),
    ]
    out += _liveness("worker", s.workers, 3000 * st.settings.worker.heartbeat_s)
    out += _liveness("scheduler", s.schedulers, 3000 * st.settings.scheduler.lease_s)
    return out


async def _redis_text(st: ApiState) -> bytes:
    """The Redis part, computed at most every metrics.cache_s (one scrape at a time)."""
    async with st.metrics_lock:
        cached = st.metrics_cache
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(await collect(st)))
        text = generate_latest(registry)
        st.metrics_cache = (time.monotonic() + st.settings.metrics.cache_s, text)
        return text


async def metrics(request: Request) -> Response:
    try:
        await authorize(request, Role.ADMIN)
        text = await _redis_text(state(request))
    except Exception as exc:  # noqa: BLE001 - problem+json as everywhere
        return problem(exc, request.url.path)
    return Response(generate_latest(REGISTRY) + text, media_type=CONTENT_TYPE_LATEST)


ROUTES = [Route("/metrics", metrics, methods=["GET"])]
