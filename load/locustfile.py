"""Locust users of the REST API (FastHttpUser): a realistic mix, and two focused ones for
the create targets. `python -m load.api_bench` runs them headless on private servers;
by hand: ``LOAD_API_KEY=<key> locust -f load/locustfile.py --host http://127.0.0.1:8000``.

Owns: what each simulated user does. Must not: start servers or judge results
(load/api_bench.py does).

Cron jobs carry the label load=<LOAD_TAG>. One-shot jobs are due ``LOAD_AHEAD_MS`` after
creation (2 s): the scheduler fires them while the load runs, and their fire lag
(slot -> enqueued) is what the bench reports.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from locust import FastHttpUser, between, constant, task

KEY = os.environ.get("LOAD_API_KEY", "")
TAG = os.environ.get("LOAD_TAG", "load")
AHEAD_MS = int(os.environ.get("LOAD_AHEAD_MS", "2000"))
BATCH = int(os.environ.get("LOAD_BATCH", "1000"))
QUEUE = "load"


def one_shot() -> dict[str, Any]:
    return {"task": "load.noop", "queue": QUEUE,
            "schedule": {"type": "at", "at_ms": int(time.time() * 1000) + AHEAD_MS}}


def cron() -> dict[str, Any]:
    minute = random.randrange(60)
    return {"task": "load.noop", "queue": QUEUE, "labels": {"load": TAG},
            "schedule": {"type": "cron", "expr": f"{minute} 3 * * *", "tz": "Europe/Paris"}}


class _Keyed(FastHttpUser):
    abstract = True

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {KEY}"} if KEY else {}
        self.mine: list[str] = []

    def post(self, path: str, body: Any = None, name: str | None = None) -> Any:
        with self.client.post(path, json=body, headers=self.headers, name=name,
                              catch_response=True) as r:
            if r.status_code >= 400 and r.status_code != 409:  # 409: raced pause/resume
                r.failure(f"{r.status_code} {r.text[:200]}")
            else:
                r.success()
            return r


class MixedUser(_Keyed):
    """Creates one-shot and cron jobs, reads status and runs, pauses, resumes, runs now."""

    wait_time = between(0.05, 0.2)

    @task(8)
    def create_one_shot(self) -> None:
        self.post("/api/v1/jobs", one_shot())

    @task(2)
    def create_cron(self) -> None:
        r = self.post("/api/v1/jobs", cron())
        if r.status_code == 201:
            self.mine = [*self.mine[-50:], r.json()["id"]]

    @task(4)
    def status(self) -> None:
        self.client.get("/api/v1/status", headers=self.headers)

    @task(4)
    def read_job_and_runs(self) -> None:
        if self.mine:
            job = random.choice(self.mine)
            self.client.get(f"/api/v1/jobs/{job}", headers=self.headers,
                            name="/api/v1/jobs/[id]")
            self.client.get(f"/api/v1/jobs/{job}/runs?limit=20", headers=self.headers,
                            name="/api/v1/jobs/[id]/runs")

    @task(2)
    def pause_and_resume(self) -> None:
        if self.mine:
            job = random.choice(self.mine)
            self.post(f"/api/v1/jobs/{job}/pause", name="/api/v1/jobs/[id]/pause")
            self.post(f"/api/v1/jobs/{job}/resume", name="/api/v1/jobs/[id]/resume")

    @task(1)
    def run_now(self) -> None:
        if self.mine:
            self.post(f"/api/v1/jobs/{random.choice(self.mine)}/run",
                      name="/api/v1/jobs/[id]/run")


class CreateUser(_Keyed):
    """POST /jobs back to back (the 1,500 req/s target)."""

    wait_time = constant(0)

    @task
    def create(self) -> None:
        self.post("/api/v1/jobs", one_shot())


class BatchUser(_Keyed):
    """POST /jobs:batch of LOAD_BATCH one-shot jobs (the 10,000 jobs/s target)."""

    wait_time = constant(0)

    @task
    def create_batch(self) -> None:
        self.post("/api/v1/jobs:batch", {"jobs": [one_shot() for _ in range(BATCH)]})
