"""The Prometheus metrics each role keeps in its own process, and their HTTP endpoint.

Owns: metric names, help texts and buckets of the roles' in-process metrics (scheduler:
fires, fire lag, shards owned; worker: runs by outcome, run duration, in flight; archiver:
events archived, archive lag), ``serve`` (a small HTTP server on ``metrics.port``, one per
process) and the live-object gauges. Must not: talk to Redis (what lives in Redis is the
API's /metrics, api/metrics.py) or do more than a counter or histogram update per fire or
run: these calls sit on the hot paths.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sized
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

# Fire lag: slot time -> fired (usually ms; minutes when a scheduler was down).
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
               300.0)
# Run duration: task start -> outcome.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0,
                    1800.0)

FIRES = Counter("rsched_scheduler_fires", "Slots fired into queue streams by this process")
FIRE_LAG = Histogram("rsched_scheduler_fire_lag_seconds",
                     "Delay between a slot's time and its firing", buckets=LAG_BUCKETS)
RUNS = Counter("rsched_worker_runs", "Run attempts ended in this process, by outcome",
               ["outcome"])
RUN_DURATION = Histogram("rsched_worker_run_duration_seconds",
                         "Time a run attempt spent executing in this process",
                         buckets=DURATION_BUCKETS)
ARCHIVED = Counter("rsched_archiver_events", "Events committed to PostgreSQL by this process")
ARCHIVE_LAG = Gauge("rsched_archiver_lag_seconds",
                    "Age of the oldest event not yet archived (as last measured)")

_outcomes: dict[str, Any] = {}  # outcome -> its bound counter child (no label lookup per run)


def run_ended(outcome: str) -> None:
    child = _outcomes.get(outcome)
    if child is None:
        child = _outcomes[outcome] = RUNS.labels(outcome)
    child.inc()


class _Live:
    """A gauge read at scrape time from the live role objects (zero cost per run)."""

    def __init__(self, name: str, doc: str, size: Callable[[Any], Sized]) -> None:
        self.objects: weakref.WeakSet[Any] = weakref.WeakSet()
        self.size = size
        Gauge(name, doc).set_function(self.total)

    def total(self) -> float:
        return float(sum(len(self.size(o)) for o in list(self.objects)))

    def add(self, obj: Any) -> None:
        self.objects.add(obj)


IN_FLIGHT = _Live("rsched_worker_runs_in_flight", "Runs executing in this process",
                  lambda w: w.inflight)
SHARDS_OWNED = _Live("rsched_scheduler_shards_owned", "Shards leased by this process",
                     lambda s: s.owned)

_served: dict[int, Any] = {}


def serve(host: str, port: int) -> int | None:
    """Start the process's /metrics HTTP server (idempotent per port; 0 = off). Returns
    the port it listens on."""
    if port == 0:
        return None
    if port not in _served:
        server, _ = start_http_server(port, addr=host, registry=REGISTRY)
        _served[port] = server
        log.info("metrics on http://%s:%d/metrics", host, server.server_port)
    return int(_served[port].server_port)
