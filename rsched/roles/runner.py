"""Runs roles in a process: wiring settings -> Redis -> Engine -> component, signals.

Owns: process-level lifecycles (SIGTERM/SIGINT -> graceful stop). Must not: contain
scheduling or execution logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec

from rsched import metrics
from rsched.archive import pg
from rsched.archive.archiver import Archiver
from rsched.client import Client
from rsched.clock import SyncedClock
from rsched.engine import Engine
from rsched.errors import DuplicateJob, RoleCrashed
from rsched.models import Every, JobDef, JobState
from rsched.roles.notifier import Notifier
from rsched.roles.scheduler import Scheduler
from rsched.roles.worker import TASK_THREADS, Worker
from rsched.settings import Settings
from rsched.tasks import registry

log = logging.getLogger(__name__)


def serve_metrics(settings: Settings) -> None:
    """This process's /metrics on metrics.port (once, shared by the roles in it)."""
    metrics.serve(settings.metrics.host, settings.metrics.port)


async def build_scheduler(settings: Settings) -> Scheduler:
    serve_metrics(settings)
    engine = await Engine.connect(settings)
    return Scheduler(engine, settings.scheduler, engine.clock())


async def build_worker(settings: Settings) -> Worker:
    registry.import_modules(settings.worker.modules)
    serve_metrics(settings)
    engine = await Engine.connect(settings)
    # Timestamps only: no TIME round trip per batch and per flush (see SyncedClock).
    return Worker(engine, settings.worker, SyncedClock(engine.clock()), registry)


async def worker_components(settings: Settings, *, notify: bool = False) -> list[Any]:
    """A worker and, with notify.enabled (or ``notify``), a notifier (alerts and webhooks)
    on the same engine."""
    w = await build_worker(settings)
    if not (notify or settings.notify.enabled):
        return [w]
    return [w, Notifier(w.engine, settings.notify, settings.alerts, w.id,
                        block_s=settings.worker.block_s)]


async def build_notifier(settings: Settings) -> Notifier:
    """A notifier on its own (`rsched notifier`): alerts and webhooks for every worker."""
    engine = await Engine.connect(settings)
    consumer = f"notifier-{socket.gethostname()}-{os.getpid()}"
    return Notifier(engine, settings.notify, settings.alerts, consumer)


async def run_until_signal(
        components: list[Any], grace_s: float,
        extra: list[Callable[[], Coroutine[Any, Any, None]]] | None = None) -> None:
    """Run components' run() until SIGTERM/SIGINT, then stop them gracefully. When one
    crashes (or returns on its own) the others are stopped the same way and RoleCrashed
    is raised, so the process exits non-zero and a supervisor restarts it."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    named = [(type(c).__name__.lower(), asyncio.create_task(c.run())) for c in components]
    named += [(f.__name__, asyncio.create_task(f())) for f in extra or []]
    tasks = [t for _, t in named]
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    crash = next((_crashed(name, t) for name, t in named if t in done), None)
    log.info("stopping (grace %.1fs)", grace_s)
    watchdog = asyncio.create_task(_report_slow_stop(grace_s + 2))
    await asyncio.gather(*(c.stop(grace_s) for c in components))  # all at once
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), grace_s + 5)
    waiter.cancel()
    watchdog.cancel()
    engines = {id(c.engine): c.engine for c in components
               if getattr(c, "engine", None) is not None}  # the API server has none
    for engine in engines.values():
        await engine.close()
    if crash is not None:
        raise crash


async def _report_slow_stop(after_s: float) -> None:
    """A stop taking longer than its grace period says what it still waits for."""
    await asyncio.sleep(after_s)
    for t in asyncio.all_tasks():
        if t is not asyncio.current_task():
            stack = io.StringIO()
            t.print_stack(limit=8, file=stack)
            log.warning("still stopping after %.0fs: %s", after_s, stack.getvalue())


def _crashed(name: str, task: asyncio.Task[None]) -> RoleCrashed:
    exc = task.exception()
    if exc is None:
        log.error("%s stopped on its own", name)
        return RoleCrashed(f"{name} stopped on its own")
    log.error("%s crashed", name, exc_info=exc)
    return RoleCrashed(f"{name} crashed: {type(exc).__name__}: {exc}")


def exit_abandoning_task_threads(wait_s: float = 0.5, code: int = 0) -> None:
    """Call once a worker has stopped. A sync task still running past the grace period
    cannot be cancelled, and Python joins pool threads at exit, which would hold the
    process open (SIGTERM "ignored") until the task returns. Its run is already left
    pending for reclaim, so exit without waiting for the thread."""
    deadline = time.monotonic() + wait_s
    threads = [t for t in threading.enumerate() if t.name.startswith(TASK_THREADS)]
    for t in threads:  # idle pool threads end by themselves in a moment
        t.join(max(0.0, deadline - time.monotonic()))
    busy = [t for t in threads if t.is_alive()]
    if busy:
        log.warning("exiting with %d sync task(s) still running past the grace period; "
                    "their runs are left pending for reclaim", len(busy))
        logging.shutdown()
        os._exit(code)


EXAMPLE = JobDef(id="hello-every-second", task="examples.hello",
                 schedule=Every(every_ms=1000), kwargs={"who": "rsched"})


async def ensure_example(settings: Settings) -> str:
    """`rsched dev`'s example job, its own to manage: after each start exactly one copy is
    active, with the current definition. A cancelled (or finished) copy keeps its id
    until its hash expires (redis.done_job_ttl_s), so a new copy then gets a suffix."""
    registry.import_modules(["rsched.examples"])
    client = await Client.connect(settings, registry)
    try:
        base = EXAMPLE.id or ""
        ids = [i for i in await client.list_jobs(limit=1000)  # active and paused jobs
               if i == base or i.startswith(base + "-")]
        for job_id in ids[1:]:
            await client.cancel(job_id)
        if ids:
            job = await client.get(ids[0])
            await client.update(ids[0], msgspec.structs.replace(EXAMPLE, id=ids[0]),
                                job.version)
            if job.state is JobState.PAUSED:
                await client.resume(ids[0])
            return ids[0]
        try:
            return await client.schedule(EXAMPLE)
        except DuplicateJob:
            suffix = await client.clock.now_ms()
            return await client.schedule(msgspec.structs.replace(EXAMPLE, id=f"{base}-{suffix}"))
    finally:
        await client.close()


async def ensure_schema(dsn: str, schema: str) -> None:
    conn = await pg.connect(dsn)
    try:
        await pg.ensure_schema(conn, schema)
    finally:
        await conn.close()


def tune_gc_for_bulk() -> None:
    """For a process doing only bulk work (`rsched archiver`): the archiver allocates a
    few dicts per event, so the default gen-0 threshold (700) runs the cyclic collector
    hundreds of times a second for garbage that reference counting frees anyway; ~15% of
    the archiver's CPU (docs/benchmarks.md, Archive). Objects alive now are frozen out of
    the collector's scans."""
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


async def build_archiver(settings: Settings) -> Archiver:
    """Migrate the archive database, then an Archiver on it (raises ArchiveError if down)."""
    serve_metrics(settings)
    conn = await pg.connect(settings.archiver.dsn)
    try:
        await pg.migrate(conn)
        await pg.apply_retention(conn, datetime.now(UTC), settings.archiver.retention_days)
    finally:
        await conn.close()
    engine = await Engine.connect(settings)
    return Archiver(engine, settings.archiver, engine.clock())


class ApiServer:
    """The REST API and dashboard under uvicorn, as one more component of a process
    (`rsched dev`). By import string: rsched never imports api (api imports rsched); the
    app reads its settings from the environment (``export_settings``)."""

    engine = None  # the app's lifespan owns its own

    def __init__(self, host: str, port: int) -> None:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield  # run_until_signal handles the signals

        self.url = f"http://{host}:{port}/"
        self.server = Server(uvicorn.Config("api.app:app_from_env", factory=True, host=host,
                                            port=port, log_level="warning", lifespan="on",
                                            timeout_graceful_shutdown=2))

    async def run(self) -> None:
        await self.server.serve()

    async def stop(self, grace_s: float = 0.0) -> None:
        self.server.should_exit = True


def export_settings(settings: Settings) -> None:
    """Put ``settings`` into this process's RSCHED_* environment (for ApiServer's app)."""
    for section, fields in msgspec.structs.asdict(settings).items():
        for name, value in msgspec.structs.asdict(fields).items():
            if value is None:
                continue
            text = (",".join(map(str, value)) if isinstance(value, list)
                    else str(value).lower() if isinstance(value, bool) else str(value))
            os.environ[f"RSCHED_{section.upper()}__{name.upper()}"] = text
