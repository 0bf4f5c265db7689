"""Engine benchmark: no-op jobs through real scheduler and worker processes on one Redis.

    python -m load.bench --scenario spread --jobs 60000 --rate 1000 --workers 1
    python -m load.bench --scenario burst --jobs 100000 --workers 2
    python -m load.bench --scenario recurring --jobs 10000 --every-ms 1000 --duration-s 60
    python -m load.bench --scenario recurring --jobs 10000 --cron '*/1 * * * * *' --tz Europe/Berlin
    python -m load.bench --scenario spread --jobs 20000 --rate 1000 --preload 1000000

(also ``rsched bench ...``). Starts a private redis-server, runs ``rsched scheduler`` and
``rsched worker`` processes, creates the jobs through Client.schedule_many, waits until
every run is done, then reads the engine's events streams back and reports create rate,
fire lag, start lag, throughput, CPU per job of each role and of Redis, and lost and
duplicated runs (per (job, slot)). Writes JSON to load/results/ and prints a markdown row.

Owns: scenarios, orchestration, the report. Must not: change engine behaviour; every
setting it uses is an ordinary RSCHED_* setting of the roles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from load.collect import from_slot, judge, lags, read_events, span_ms, start_gaps, worst_lag_windows
from load.procs import REPO, Roles, cpu_ns_s, cpu_s, machine_cpu_s
from load.report import HEADER, by_role, command_costs, cores, cpu_phases, machine, markdown_row
from load.servers import TASKS, task_env
from rsched.client import Client
from rsched.devservers import RedisServer
from rsched.engine import Engine
from rsched.engine.keys import WORKER_GROUP
from rsched.models import At, Cron, Every, JobDef, Misfire, Schedule
from rsched.settings import Settings
from rsched.timing import first_fire, next_fire

QUEUE = "bench"
RESULTS = REPO / "load" / "results"


@dataclass
class Plan:
    jobs: list[JobDef]
    expected: set[tuple[str, int]]
    first_ms: int
    last_ms: int


def plan_oneshot(n: int, rate: float | None, t0: int, task: str = "bench.noop") -> Plan:
    """n one-shot jobs from t0 on, `rate` per second (None: all at t0, the burst)."""
    jobs, expected = [], set()
    for i in range(n):
        at = t0 if rate is None else t0 + int(i * 1000 / rate)
        job_id = f"b{i:07d}"
        jobs.append(JobDef(id=job_id, task=task, queue=QUEUE, schedule=At(at_ms=at)))
        expected.add((job_id, at))
    last = t0 if rate is None else t0 + int((n - 1) * 1000 / rate)
    return Plan(jobs, expected, t0, last)


def plan_recurring(k: int, every_ms: int, duration_s: float, t0: int, same_phase: bool,
                   task: str = "bench.noop", cron: str = "", tz: str = "UTC",
                   own_trigger: bool = False) -> Plan:
    """k interval jobs over [t0, t0 + duration); phases spread over one interval unless
    same_phase (then all k fire together every interval). With ``cron``, k jobs on that
    cron expression in zone ``tz`` instead (they share its slots), ending at the same
    instant, or (own_trigger) each with its own end (up to a second later) and grace (a
    µs apart): then no two jobs' triggers are equal, as with jobs users made, and only
    the slots are shared."""
    end = t0 + int(duration_s * 1000) - 1
    jobs: list[JobDef] = []
    expected: set[tuple[str, int]] = set()
    shared = Cron(expr=cron, tz=tz, end_ms=end) if cron else None
    # the slots up to the latest end, computed once (planning must not eat the lead time)
    shared_slots = _cron_slots(Cron(expr=cron, tz=tz), t0, end + 999) if cron else []
    for i in range(k):
        job_id = f"e{i:07d}"
        sched: Schedule
        if shared:
            sched = Cron(expr=cron, tz=tz, end_ms=end + i % 1000) if own_trigger else shared
            slots = [s for s in shared_slots if s <= (sched.end_ms or end)]
        else:
            start = t0 if same_phase else t0 + (i * every_ms) // k
            sched = Every(every_ms=every_ms, start_ms=start, end_ms=end)
            slots = list(range(start, end + 1, every_ms))
        # catch_up: a slot that falls a period behind still runs (fire_once would fold
        # it into the next one), so every planned slot is expected exactly once.
        grace = 60.0 + i / 1e6 if own_trigger else 60.0
        jobs.append(JobDef(id=job_id, task=task, queue=QUEUE, misfire=Misfire.CATCH_UP,
                           schedule=sched, grace_s=grace))
        expected.update((job_id, s) for s in slots)
    first = min((s for _, s in expected), default=t0)
    return Plan(jobs, expected, first, end)


def _cron_slots(sched: Cron, t0: int, end: int) -> list[int]:
    """The slots a cron job created before t0 fires in [t0, end]."""
    out, nxt = [], first_fire(sched, t0)
    while nxt is not None and nxt <= end:
        out.append(nxt)
        nxt = next_fire(sched, nxt)
    return out


def role_settings(a: argparse.Namespace, url: str) -> dict[str, Any]:
    s: dict[str, Any] = {
        "redis.url": url, "redis.prefix": a.prefix, "redis.shards": a.shards,
        "worker.queues": [QUEUE], "worker.modules": ["load.tasks"], "worker.run_ttl_s": 86400,
        "scheduler.events_maxlen": 100_000_000,
    }
    if a.concurrency is not None:  # else the worker's default
        s["worker.concurrency"] = a.concurrency
    for item in a.set:
        name, _, value = item.partition("=")
        s[name] = value
    return s


async def wait_ready(engine: Engine, a: argparse.Namespace, roles: Roles) -> None:
    """Until every worker heartbeats and the shards' leases are spread over the schedulers."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if roles.dead():
            raise RuntimeError(f"role(s) exited early: {roles.dead()}\n{roles.logs()}")
        workers = await engine.core.redis.zcard(engine.core.global_keys.workers)
        owners = await engine.core.redis.mget([k.lease for k in engine.core.shard_keys])
        held = [o for o in owners if o]
        per = {o: held.count(o) for o in set(held)}
        fair = -(-engine.shards // max(1, a.schedulers))
        if (workers >= a.workers and len(held) == engine.shards and len(per) == a.schedulers
                and max(per.values()) <= fair):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"roles not ready within 60s\n{roles.logs()}")


async def progress(engine: Engine) -> tuple[int, int, int]:
    """(due entries, undelivered entries, pending entries) over every shard."""
    pipe = engine.core.redis.pipeline(transaction=False)
    for k in engine.core.shard_keys:
        pipe.zcard(k.due)
        pipe.xinfo_groups(k.queue(QUEUE))
    replies = await pipe.execute(raise_on_error=False)
    due = lag = pending = 0
    for zc, groups in zip(replies[::2], replies[1::2], strict=True):
        due += int(zc)
        for g in groups if isinstance(groups, list) else []:
            if g["name"] in (WORKER_GROUP, WORKER_GROUP.encode()):
                lag += int(g.get("lag") or 0)
                pending += int(g["pending"])
    return due, lag, pending


async def wait_done(engine: Engine, plan: Plan, floor_due: int, timeout_s: float,
                    roles: Roles) -> bool:
    """Until every planned slot has fired and every run is acked, or nothing moved for
    timeout_s after the last slot."""
    last_change, last = time.monotonic(), (-1, -1, -1)
    while True:
        now = await engine_now(engine)
        state = await progress(engine)
        due, lag, pending = state
        if now > plan.last_ms and due <= floor_due and lag == 0 and pending == 0:
            return True
        if state != last:
            last, last_change = state, time.monotonic()
        elif now > plan.last_ms and time.monotonic() - last_change > timeout_s:
            return False
        if roles.dead():
            print(f"warning: role(s) exited: {roles.dead()}")
        await asyncio.sleep(0.1)


async def engine_now(engine: Engine) -> int:
    sec, usec = await engine.core.redis.time()
    return int(sec) * 1000 + int(usec) // 1000


async def create(client: Client, jobs: list[JobDef], inflight: int = 0) -> float:
    """Seconds to create ``jobs``: through schedule_many, or (inflight > 0) one
    ``Client.schedule`` call per job with that many calls in flight."""
    t = time.perf_counter()
    if inflight:
        async def lane(part: list[JobDef]) -> None:
            for job in part:
                await client.schedule(job)

        await asyncio.gather(*(lane(jobs[i::inflight]) for i in range(inflight)))
    else:
        for i in range(0, len(jobs), 10_000):
            await client.schedule_many(jobs[i:i + 10_000])
    return time.perf_counter() - t


async def preload(client: Client, n: int) -> dict[str, Any]:
    """n jobs due in 30 days: a large due index the measured fires must not feel."""
    if not n:
        return {}
    redis = client.engine.core.redis
    before = int((await redis.info("memory"))["used_memory"])
    far = await engine_now(client.engine) + 30 * 86400 * 1000
    seconds = 0.0
    for i in range(0, n, 50_000):
        part = [JobDef(id=f"p{j:08d}", task="bench.noop", queue=QUEUE, schedule=At(at_ms=far + j))
                for j in range(i, min(n, i + 50_000))]
        seconds += await create(client, part)
    after = int((await redis.info("memory"))["used_memory"])
    events = sum([int(await redis.memory_usage(k.events) or 0)
                  for k in client.engine.core.shard_keys])
    return {"jobs": n, "seconds": round(seconds, 2), "per_s": round(n / seconds),
            "used_memory_before": before, "used_memory_after": after,
            "bytes_per_job": round((after - before) / n),
            "events_stream_bytes_per_job": round(events / n)}


def plan_for(a: argparse.Namespace, now: int) -> Plan:
    if a.scenario == "recurring":
        return plan_recurring(a.jobs, a.every_ms, a.duration_s, now + int(a.lead_s * 1000),
                              a.same_phase, TASKS[a.task], a.cron, a.tz, a.own_trigger)
    lead = a.lead_s if a.lead_s is not None else 2 + a.jobs / 8_000
    return plan_oneshot(a.jobs, a.rate if a.scenario == "spread" else None,
                        now + int(lead * 1000), TASKS[a.task])


async def measure(a: argparse.Namespace, url: str, redis_pid: int, log_dir: Path
                  ) -> dict[str, Any]:
    with task_env(a.task, url, a.task_max_connections) as (env, httpd_pid):
        return await _measure(a, url, redis_pid, httpd_pid, Roles(role_settings(a, url),
                                                                  log_dir, env))


def snapshot(roles: Roles, redis_pid: int, httpd_pid: int | None) -> dict[str, float]:
    """CPU seconds so far per role (workers, schedulers, Redis, the HTTP server)."""
    procs = {**roles.cpu_ns(), "redis": cpu_ns_s(redis_pid)}
    if httpd_pid:
        procs["httpd"] = cpu_ns_s(httpd_pid)
    return by_role(procs)


async def _measure(a: argparse.Namespace, url: str, redis_pid: int, httpd_pid: int | None,
                   roles: Roles) -> dict[str, Any]:
    settings = Settings.from_env(environ={}, overrides=roles.settings)
    for _ in range(a.workers):
        roles.spawn("worker")
    for _ in range(a.schedulers):
        roles.spawn("scheduler")
    client = await Client.connect(settings)
    engine = client.engine
    snaps = []
    try:
        await wait_ready(engine, a, roles)
        pre = await preload(client, a.preload)
        floor_due = (await progress(engine))[0]
        snaps.append(snapshot(roles, redis_pid, httpd_pid))
        await asyncio.sleep(a.idle_s)
        snaps.append(snapshot(roles, redis_pid, httpd_pid))
        now = await engine_now(engine)
        plan = plan_for(a, now)
        since = f"{now}-0"
        await engine.core.redis.config_resetstat()
        me_c0 = time.process_time()
        create_s = await create(client, plan.jobs, a.create_inflight)
        create_cpu_s = time.process_time() - me_c0  # the creating client's CPU (this process)
        create_stats = await engine.core.redis.info("commandstats")
        late = await engine_now(engine) > plan.first_ms
        snaps.append(snapshot(roles, redis_pid, httpd_pid))
        cpu0, redis0, box0, me0 = roles.cpu(), cpu_s(redis_pid), machine_cpu_s(), cpu_s(os.getpid())
        await engine.core.redis.config_resetstat()
        finished = await wait_done(engine, plan, floor_due, a.timeout_s, roles)
        cpu1, redis1, box1, me1 = roles.cpu(), cpu_s(redis_pid), machine_cpu_s(), cpu_s(os.getpid())
        snaps.append(snapshot(roles, redis_pid, httpd_pid))
        stats = await engine.core.redis.info("commandstats")
        clients = (await engine.core.redis.info("clients"))["connected_clients"]
        roles.stop()
        warnings = roles.logs()
        facts = await read_events(engine.core.redis, engine.core.shard_keys, since)
    finally:
        roles.stop()
        await client.close()
    early = 0
    if a.cron:  # runs of slots before the plan's first: fired while the jobs were created
        facts, early = from_slot(facts, plan.first_ms)
    counts = judge(facts, plan.expected)
    counts["before_window_dropped"] = early
    first, last_end = span_ms(facts)
    done = counts["completed"]
    window_s = max(0.001, (last_end - first) / 1000)
    last_start = max((r.task_us // 1000 for r in facts.runs.values() if r.task_us), default=0)

    def used(role: str, i: int) -> float:
        if role == "redis":
            return redis1[i] - redis0[i]
        return sum(cpu1[n][i] - cpu0[n][i] for n in cpu0 if n.startswith(role) and n in cpu1)

    def per_job(role: str) -> float:
        return round((used(role, 0) + used(role, 1)) / max(1, done) * 1e6, 1)

    def sys_share(role: str) -> float:
        return round(used(role, 1) / max(1e-9, used(role, 0) + used(role, 1)), 2)

    return {
        "scenario": a.scenario, "label": a.label, "finished": finished,
        "params": {"jobs": a.jobs, "rate": a.rate, "every_ms": a.every_ms,
                   "duration_s": a.duration_s, "same_phase": a.same_phase, "task": a.task,
                   "cron": a.cron, "tz": a.tz, "own_trigger": a.own_trigger,
                   "task_max_connections": a.task_max_connections,
                   "schedulers": a.schedulers, "workers": a.workers, "shards": a.shards,
                   "concurrency": a.concurrency or "default", "preload": a.preload,
                   "set": a.set},
        "create": {"jobs": len(plan.jobs), "seconds": round(create_s, 3),
                   "per_s": round(len(plan.jobs) / create_s),
                   "path": f"schedule x{a.create_inflight}" if a.create_inflight else
                   "schedule_many", "finished_after_first_slot": late,
                   "client_cpu_us_per_job": round(create_cpu_s * 1e6 / len(plan.jobs), 1),
                   "redis_commands_per_job": command_costs(create_stats, len(plan.jobs))},
        "preload": pre,
        "counts": counts,
        **{k: {m: round(v, 2) for m, v in p.items()} for k, p in lags(facts).items()},
        "throughput_per_s": round(done / window_s),
        # the measure: completed / (last task start - first slot)
        "throughput_to_last_start_per_s": round(done / max(0.001, (last_start - first) / 1000)),
        "window_s": round(window_s, 3),
        "cpu_us_per_job": {"workers": per_job("worker"), "schedulers": per_job("scheduler"),
                           "redis": per_job("redis")},
        "cpu_phases": cpu_phases(snaps, a.idle_s, len(plan.jobs)),
        "cpu_system_share": {r: sys_share(r) for r in ("worker", "scheduler", "redis")},
        "cpu_cores_busy": {r: round((used(r, 0) + used(r, 1)) / window_s, 2)
                           for r in ("worker", "scheduler", "redis")},
        # CPU the rest of the machine used meanwhile (other people's work on a shared box):
        # results with a large value here are not comparable.
        "other_cores_busy": round(max(0.0, (box1[0] - box0[0]) - sum(
            used(r, 0) + used(r, 1) for r in ("worker", "scheduler", "redis"))
            - sum(me1) + sum(me0)) / max(0.001, (box1[1] - box0[1]) / cores()), 2),
        "redis_connected_clients": clients,
        "role_logs": warnings[-3000:],  # warnings the roles logged (failed runs, reclaims)
        "events_read": facts.events,
        "worst_fire_lag_windows": worst_lag_windows(facts),
        "start_gaps": start_gaps(facts),
        "redis_commands_per_job": command_costs(stats, done),
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m load.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", choices=["spread", "burst", "recurring"], default="spread")
    ap.add_argument("--jobs", type=int, default=10_000, help="one-shot jobs, or interval jobs")
    ap.add_argument("--rate", type=float, default=1000.0, help="spread: fires per second")
    ap.add_argument("--every-ms", type=int, default=1000, help="recurring: interval")
    ap.add_argument("--duration-s", type=float, default=60.0, help="recurring: how long")
    ap.add_argument("--same-phase", action="store_true",
                    help="recurring: all jobs share each slot instead of spreading over it")
    ap.add_argument("--cron", default="", metavar="EXPR",
                    help="recurring: every job on this cron (e.g. '*/1 * * * * *') instead of"
                    " --every-ms; the jobs share its slots")
    ap.add_argument("--tz", default="UTC", help="recurring --cron: the cron's time zone")
    ap.add_argument("--own-trigger", action="store_true",
                    help="recurring --cron: each job has its own end and grace (no two"
                    " triggers equal)")
    ap.add_argument("--schedulers", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=None,
                    help="per worker process (default: the worker's default setting)")
    ap.add_argument("--sweep", default="", metavar="C1,C2,...",
                    help="run once per worker concurrency, e.g. 10,20,100,500,1000")
    ap.add_argument("--task", choices=sorted(TASKS), default="noop",
                    help="noop; redis: one async GET (redis-py, its own client); http: one"
                    " GET to a local server (httpx); asleep / sleep: 10 ms async / blocking")
    ap.add_argument("--task-max-connections", type=int, default=None,
                    help="size the task's Redis (blocking pool) / HTTP client to this")
    ap.add_argument("--idle-s", type=float, default=2.0,
                    help="seconds of idle CPU measured before the jobs are created")
    ap.add_argument("--preload", type=int, default=0,
                    help="far-future jobs loaded first (the scale variant)")
    ap.add_argument("--lead-s", type=float, default=None,
                    help="time between creating and the first slot (default: from --jobs)")
    ap.add_argument("--timeout-s", type=float, default=30.0,
                    help="give up when nothing moved this long after the last slot")
    ap.add_argument("--create-inflight", type=int, default=0, metavar="N",
                    help="create through Client.schedule, N calls in flight (0: schedule_many)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="any role setting, e.g. --set worker.batch=500")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="run each configuration N times (one row each)")
    ap.add_argument("--prefix", default="bench")
    ap.add_argument("--label", default="")
    ap.add_argument("--redis-url", default=None,
                    help="use this Redis (and --redis-pid for its CPU) instead of a private one")
    ap.add_argument("--redis-pid", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--no-save", action="store_true")
    a = ap.parse_args(argv)
    if a.scenario == "recurring" and a.lead_s is None:
        a.lead_s = 2 + a.jobs / 8_000
    return a


def run(a: argparse.Namespace) -> dict[str, Any]:
    server = None if a.redis_url else RedisServer().start()
    url = a.redis_url or server.url  # type: ignore[union-attr]
    pid = a.redis_pid if a.redis_url else server.proc.pid  # type: ignore[union-attr]
    try:
        with tempfile.TemporaryDirectory(prefix="rsched-bench-") as logs:
            result = asyncio.run(measure(a, url, pid, Path(logs)))
    finally:
        if server is not None:
            server.cleanup()
    result["machine"] = machine()
    if not a.no_save:
        a.out.mkdir(parents=True, exist_ok=True)
        name = f"{a.scenario}-{time.strftime('%Y%m%d-%H%M%S')}{'-' + a.label if a.label else ''}"
        (a.out / f"{name}.json").write_text(json.dumps(result, indent=2))
        result["saved_to"] = str(a.out / f"{name}.json")
    return result


def main(argv: list[str] | None = None) -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover
        pass
    a = parse(argv)
    rows = []
    for conc in [int(c) for c in a.sweep.split(",") if c] or [a.concurrency]:
        a.concurrency = conc
        for _ in range(a.repeat):
            rows.append(_one(a))
    print(HEADER)
    print("\n".join(rows))


def _one(a: argparse.Namespace) -> str:
    """Run once, print the JSON (less the bulky parts), return the markdown row."""
    result = run(a)
    keep = ("machine", "worst_fire_lag_windows", "marked_running_lag_ms",
            "recorded_start_lag_ms")
    print(json.dumps({k: v for k, v in result.items() if k not in keep}, indent=2))
    return markdown_row(result)


if __name__ == "__main__":
    main()
