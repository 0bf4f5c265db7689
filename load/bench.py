"""Engine benchmark: no-op jobs through real scheduler and worker processes on one Redis.

    python -m load.bench --scenario spread --jobs 60000 --rate 1000 --workers 1
    python -m load.bench --scenario burst --jobs 100000 --workers 2
    python -m load.bench --scenario recurring --jobs 10000 --every-ms 1000 --duration-s 60
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
import platform
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from load.collect import judge, lags, read_events, span_ms, worst_lag_windows
from load.procs import REPO, Roles, cpu_s, machine_cpu_s
from rsched.client import Client
from rsched.devservers import RedisServer
from rsched.engine import Engine
from rsched.engine.keys import WORKER_GROUP
from rsched.models import At, Every, JobDef, Misfire
from rsched.settings import Settings

QUEUE = "bench"
TASK = "bench.noop"
RESULTS = REPO / "load" / "results"


@dataclass
class Plan:
    jobs: list[JobDef]
    expected: set[tuple[str, int]]
    first_ms: int
    last_ms: int


def plan_oneshot(n: int, rate: float | None, t0: int) -> Plan:
    """n one-shot jobs from t0 on, `rate` per second (None: all at t0, the burst)."""
    jobs, expected = [], set()
    for i in range(n):
        at = t0 if rate is None else t0 + int(i * 1000 / rate)
        job_id = f"b{i:07d}"
        jobs.append(JobDef(id=job_id, task=TASK, queue=QUEUE, schedule=At(at_ms=at)))
        expected.add((job_id, at))
    last = t0 if rate is None else t0 + int((n - 1) * 1000 / rate)
    return Plan(jobs, expected, t0, last)


def plan_recurring(k: int, every_ms: int, duration_s: float, t0: int, same_phase: bool
                   ) -> Plan:
    """k interval jobs over [t0, t0 + duration); phases spread over one interval unless
    same_phase (then all k fire together every interval)."""
    end = t0 + int(duration_s * 1000) - 1
    jobs, expected = [], set()
    for i in range(k):
        start = t0 if same_phase else t0 + (i * every_ms) // k
        job_id = f"e{i:07d}"
        # catch_up: a slot that falls a period behind still runs (fire_once would fold
        # it into the next one), so every planned slot is expected exactly once.
        jobs.append(JobDef(id=job_id, task=TASK, queue=QUEUE, misfire=Misfire.CATCH_UP,
                           schedule=Every(every_ms=every_ms, start_ms=start, end_ms=end)))
        expected.update((job_id, s) for s in range(start, end + 1, every_ms))
    return Plan(jobs, expected, t0, end)


def role_settings(a: argparse.Namespace, url: str) -> dict[str, Any]:
    s: dict[str, Any] = {
        "redis.url": url, "redis.prefix": a.prefix, "redis.shards": a.shards,
        "worker.queues": [QUEUE], "worker.modules": ["load.tasks"],
        "worker.concurrency": a.concurrency, "worker.run_ttl_s": 86400,
        "scheduler.events_maxlen": 100_000_000,
    }
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


async def create(client: Client, jobs: list[JobDef], single: bool) -> float:
    t = time.perf_counter()
    if single:
        for job in jobs:
            await client.schedule(job)
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
        part = [JobDef(id=f"p{j:08d}", task=TASK, queue=QUEUE, schedule=At(at_ms=far + j))
                for j in range(i, min(n, i + 50_000))]
        seconds += await create(client, part, single=False)
    after = int((await redis.info("memory"))["used_memory"])
    events = sum([int(await redis.memory_usage(k.events) or 0)
                  for k in client.engine.core.shard_keys])
    return {"jobs": n, "seconds": round(seconds, 2), "per_s": round(n / seconds),
            "used_memory_before": before, "used_memory_after": after,
            "bytes_per_job": round((after - before) / n),
            "events_stream_bytes_per_job": round(events / n)}


def command_costs(stats: dict[str, Any], jobs: int) -> dict[str, dict[str, float]]:
    """Redis calls and CPU µs per job by command (commands inside scripts included),
    from INFO commandstats reset when the measured phase began; costliest first."""
    out = {name.removeprefix("cmdstat_"): {"calls": round(v["calls"] / max(1, jobs), 2),
                                           "usec": round(v["usec"] / max(1, jobs), 2)}
           for name, v in stats.items()}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["usec"]))


def cores() -> int:
    return os.cpu_count() or 1


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo
                  if ln.startswith("model name")), platform.processor())
    mem = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
               if ln.startswith("MemTotal"))
    redis_v = subprocess.run(["redis-server", "--version"], capture_output=True,
                             text=True).stdout.split()[2].removeprefix("v=")
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()
    pkgs = {p: metadata.version(p) for p in ("redis", "hiredis", "msgspec", "uvloop")}
    return {"cpu": model, "cores": cores(),
            "mem_gib": round(mem / 2**20, 1), "python": platform.python_version(),
            "redis_server": redis_v, "commit": commit, **pkgs}


def plan_for(a: argparse.Namespace, now: int) -> Plan:
    if a.scenario == "recurring":
        return plan_recurring(a.jobs, a.every_ms, a.duration_s, now + int(a.lead_s * 1000),
                              a.same_phase)
    lead = a.lead_s if a.lead_s is not None else 2 + a.jobs / 8_000
    return plan_oneshot(a.jobs, a.rate if a.scenario == "spread" else None,
                        now + int(lead * 1000))


async def measure(a: argparse.Namespace, url: str, redis_pid: int, log_dir: Path
                  ) -> dict[str, Any]:
    roles = Roles(role_settings(a, url), log_dir)
    settings = Settings.from_env(environ={}, overrides=roles.settings)
    for _ in range(a.workers):
        roles.spawn("worker")
    for _ in range(a.schedulers):
        roles.spawn("scheduler")
    client = await Client.connect(settings)
    engine = client.engine
    try:
        await wait_ready(engine, a, roles)
        pre = await preload(client, a.preload)
        floor_due = (await progress(engine))[0]
        now = await engine_now(engine)
        plan = plan_for(a, now)
        since = f"{now}-0"
        create_s = await create(client, plan.jobs, a.single_create)
        late = await engine_now(engine) > plan.first_ms
        cpu0, redis0, box0, me0 = roles.cpu(), cpu_s(redis_pid), machine_cpu_s(), cpu_s(os.getpid())
        await engine.core.redis.config_resetstat()
        finished = await wait_done(engine, plan, floor_due, a.timeout_s, roles)
        cpu1, redis1, box1, me1 = roles.cpu(), cpu_s(redis_pid), machine_cpu_s(), cpu_s(os.getpid())
        stats = await engine.core.redis.info("commandstats")
        roles.stop()
        facts = await read_events(engine.core.redis, engine.core.shard_keys, since)
    finally:
        roles.stop()
        await client.close()
    counts = judge(facts, plan.expected)
    first, last_end = span_ms(facts)
    done = counts["completed"]
    window_s = max(0.001, (last_end - first) / 1000)

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
                   "duration_s": a.duration_s, "same_phase": a.same_phase,
                   "schedulers": a.schedulers, "workers": a.workers, "shards": a.shards,
                   "concurrency": a.concurrency, "preload": a.preload, "set": a.set},
        "create": {"jobs": len(plan.jobs), "seconds": round(create_s, 3),
                   "per_s": round(len(plan.jobs) / create_s),
                   "path": "schedule" if a.single_create else "schedule_many",
                   "finished_after_first_slot": late},
        "preload": pre,
        "counts": counts,
        **{k: {m: round(v, 2) for m, v in p.items()} for k, p in lags(facts).items()},
        "throughput_per_s": round(done / window_s),
        "window_s": round(window_s, 3),
        "cpu_us_per_job": {"workers": per_job("worker"), "schedulers": per_job("scheduler"),
                           "redis": per_job("redis")},
        "cpu_system_share": {r: sys_share(r) for r in ("worker", "scheduler", "redis")},
        "cpu_cores_busy": {r: round((used(r, 0) + used(r, 1)) / window_s, 2)
                           for r in ("worker", "scheduler", "redis")},
        # CPU the rest of the machine used meanwhile (other people's work on a shared box):
        # results with a large value here are not comparable.
        "other_cores_busy": round(max(0.0, (box1[0] - box0[0]) - sum(
            used(r, 0) + used(r, 1) for r in ("worker", "scheduler", "redis"))
            - sum(me1) + sum(me0)) / max(0.001, (box1[1] - box0[1]) / cores()), 2),
        "events_read": facts.events,
        "worst_fire_lag_windows": worst_lag_windows(facts),
        "redis_commands_per_job": command_costs(stats, done),
    }


def markdown_row(r: dict[str, Any]) -> str:
    p, c, cpu = r["params"], r["counts"], r["cpu_us_per_job"]
    fl, sl = r["fire_lag_ms"], r["start_lag_ms"]
    rate = {"spread": f"{p['rate']:g}/s", "burst": "burst",
            "recurring": f"{p['jobs'] * 1000 / p['every_ms']:g}/s"}[r["scenario"]]
    jobs = c["expected"]
    pre = f" +{p['preload']:,} far" if p["preload"] else ""
    return (f"| {r['scenario']}{pre} | {jobs:,} | {rate} | {p['schedulers']}×{p['workers']} "
            f"| {r['create']['per_s']:,} | {fl['p50']:g} / {fl['p99']:g} / {fl['max']:g} "
            f"| {sl['p50']:g} / {sl['p90']:g} / {sl['p99']:g} / {sl['max']:g} "
            f"| {r['throughput_per_s']:,} | {cpu['workers']:g} / {cpu['schedulers']:g} / "
            f"{cpu['redis']:g} | {c['lost']} | {c['duplicated']} | {c['missed_slots']} |")


HEADER = ("| scenario | runs | fires | S×W | created/s | fire lag p50/p99/max ms "
          "| start lag p50/p90/p99/max ms | jobs/s e2e | CPU µs/job W/S/Redis | lost "
          "| dup | missed |\n|---|---|---|---|---|---|---|---|---|---|---|---|")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m load.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", choices=["spread", "burst", "recurring"], default="spread")
    ap.add_argument("--jobs", type=int, default=10_000, help="one-shot jobs, or interval jobs")
    ap.add_argument("--rate", type=float, default=1000.0, help="spread: fires per second")
    ap.add_argument("--every-ms", type=int, default=1000, help="recurring: interval")
    ap.add_argument("--duration-s", type=float, default=60.0, help="recurring: how long")
    ap.add_argument("--same-phase", action="store_true",
                    help="recurring: all jobs share each slot instead of spreading over it")
    ap.add_argument("--schedulers", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=500, help="per worker process")
    ap.add_argument("--preload", type=int, default=0,
                    help="far-future jobs loaded first (the scale variant)")
    ap.add_argument("--lead-s", type=float, default=None,
                    help="time between creating and the first slot (default: from --jobs)")
    ap.add_argument("--timeout-s", type=float, default=30.0,
                    help="give up when nothing moved this long after the last slot")
    ap.add_argument("--single-create", action="store_true",
                    help="create through Client.schedule one by one, not schedule_many")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="any role setting, e.g. --set worker.batch=500")
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
    result = run(parse(argv))
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    print(HEADER)
    print(markdown_row(result))


if __name__ == "__main__":
    main()
