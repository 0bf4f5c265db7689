"""The REST API under Locust, headless, on private servers; results into docs/benchmarks.md.

    .venv/bin/python -m load.api_bench [--duration-s 20] [--users 32] [--no-write]

Starts a private redis-server, one `rsched api` (one uvicorn process, rate limit raised
out of the way) and one `rsched scheduler`, then runs load/locustfile.py's users in turn
(mixed, create, batch) with one Locust process each, and reports per endpoint requests/s
and p50/p99 (Locust's own figures), the CPU each process used (so a figure shows the API's
limit, not Locust's), and the fire lag (slot -> enqueued, from the events streams) of the
one-shot jobs the load created.

Owns: the API benchmark's processes, timing and report. Must not: assert anything (a
benchmark, not a test).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from load.bench import machine
from load.collect import percentiles, read_events
from load.procs import REPO, Roles, cpu_s, machine_cpu_s
from rsched.devservers import RedisServer, free_port
from rsched.engine import Engine
from rsched.models import Role
from rsched.settings import Settings

SCENARIOS = {"mixed": "MixedUser", "create": "CreateUser", "batch": "BatchUser"}
DOC = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- api-bench:begin -->", "<!-- api-bench:end -->"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration-s", type=float, default=20.0, help="per scenario")
    p.add_argument("--users", type=int, default=32, help="Locust users (mixed, create)")
    p.add_argument("--batch-users", type=int, default=4)
    p.add_argument("--batch", type=int, default=1000, help="jobs per POST /jobs:batch")
    p.add_argument("--scenarios", default="mixed,create,batch")
    p.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    return p.parse_args(argv)


def locust(a: argparse.Namespace, scenario: str, host: str, key: str, out: Path
           ) -> dict[str, Any]:
    users = a.batch_users if scenario == "batch" else a.users
    cmd = [sys.executable, "-m", "locust", "-f", str(REPO / "load" / "locustfile.py"),
           "--headless", "-u", str(users), "-r", str(users), "-t", f"{a.duration_s:.0f}s",
           "--host", host, "--csv", str(out / scenario), "--only-summary",
           "--loglevel", "WARNING", "--stop-timeout", "5", SCENARIOS[scenario]]
    env = {**os.environ, "LOAD_API_KEY": key, "LOAD_BATCH": str(a.batch)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    last = (0.0, 0.0)
    while proc.poll() is None:  # CPU until just before it exits (then /proc is gone)
        last = cpu_s(proc.pid)
        time.sleep(0.2)
    _, err = proc.communicate()
    rows = list(csv.DictReader((out / f"{scenario}_stats.csv").open()))
    return {"rows": rows, "locust_cpu_s": sum(last), "stderr": err[-2000:]}


def endpoint_rows(rows: list[dict[str, str]], batch: int) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        if r["Name"] == "Aggregated":
            continue
        rps = float(r["Requests/s"])
        out.append({"endpoint": f"{r['Type']} {r['Name']}", "requests": int(r["Request Count"]),
                    "failures": int(r["Failure Count"]), "rps": rps,
                    "p50_ms": float(r["50%"]), "p99_ms": float(r["99%"]),
                    "jobs_per_s": rps * batch if r["Name"].endswith(":batch") else None})
    return out


async def make_key(url: str) -> str:
    engine = await Engine.connect(Settings.from_env(environ={}, overrides={
        "redis.url": url, "redis.shards": 16}))
    try:
        now = await engine.clock().now_ms()
        return (await engine.access.create_key("bench", Role.WRITE, now, "api_bench"))[1]
    finally:
        await engine.close()


async def fire_lag(url: str, wait_s: float) -> dict[str, float]:
    await asyncio.sleep(wait_s)  # the last one-shots come due and fire
    engine = await Engine.connect(Settings.from_env(environ={}, overrides={"redis.url": url}))
    try:
        facts = await read_events(engine.core.redis, engine.core.shard_keys, "-")
    finally:
        await engine.close()
    return percentiles([r.enq_ms - r.slot_ms for r in facts.runs.values()])


def wait_up(host: str, roles: Roles) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{host}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert not roles.dead(), f"died: {roles.dead()}"
        time.sleep(0.1)
    raise SystemExit("rsched api did not become ready")


def run(a: argparse.Namespace) -> dict[str, Any]:
    redis = RedisServer().start()
    log_dir = Path(tempfile.mkdtemp(prefix="rsched-api-bench-"))
    port = free_port()
    roles = Roles({"redis.url": redis.url, "redis.shards": 16, "archiver.dsn": "",
                   "api.rate_per_s": 1e6, "api.burst": 1_000_000}, log_dir)
    result: dict[str, Any] = {"machine": machine(), "args": vars(a), "scenarios": {}}
    try:
        key = asyncio.run(make_key(redis.url))
        roles.spawn("api", "--port", str(port))
        roles.spawn("scheduler")
        host = f"http://127.0.0.1:{port}"
        wait_up(host, roles)
        for scenario in a.scenarios.split(","):
            before, busy0 = roles.cpu(), machine_cpu_s()
            cpu0, t0 = cpu_s(redis.proc.pid), time.monotonic()  # type: ignore[union-attr]
            got = locust(a, scenario, host, key, log_dir)
            wall = time.monotonic() - t0
            after, busy1 = roles.cpu(), machine_cpu_s()
            result["scenarios"][scenario] = {
                "endpoints": endpoint_rows(got["rows"], a.batch), "wall_s": wall,
                "cpu_cores": {
                    "api": sum(after["api-0"]) - sum(before["api-0"]),
                    "scheduler": sum(after["scheduler-0"]) - sum(before["scheduler-0"]),
                    "redis": sum(cpu_s(redis.proc.pid)) - sum(cpu0),  # type: ignore[union-attr]
                    "locust": got["locust_cpu_s"], "machine": busy1[0] - busy0[0]},
                "locust_stderr": got["stderr"]}
            done = sum(e["requests"] for e in result["scenarios"][scenario]["endpoints"])
            api_s = result["scenarios"][scenario]["cpu_cores"]["api"]
            result["scenarios"][scenario]["api_cpu_ms_per_request"] = \
                round(1000 * api_s / max(1, done), 3)
            for k, v in result["scenarios"][scenario]["cpu_cores"].items():
                result["scenarios"][scenario]["cpu_cores"][k] = round(v / wall, 2)
        result["fire_lag_ms"] = asyncio.run(fire_lag(redis.url, 4.0))
    finally:
        roles.stop()
        redis.cleanup()
    return result


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [BEGIN, f"Measured {time.strftime('%Y-%m-%d')} ({m['cores']} cores, {m['cpu']}, "
             f"Python {m['python']}, redis-server {m['redis_server']}, commit {m['commit']}); "
             f"{r['args']['duration_s']:.0f} s per scenario, {r['args']['users']} users "
             f"(batch: {r['args']['batch_users']} users x {r['args']['batch']} jobs).", "",
             "| scenario | endpoint | requests | failures | req/s | jobs/s | p50 ms | p99 ms |",
             "|---|---|---|---|---|---|---|---|"]
    for name, s in r["scenarios"].items():
        for e in s["endpoints"]:
            jobs = f"{e['jobs_per_s']:,.0f}" if e["jobs_per_s"] else ""
            lines.append(f"| {name} | `{e['endpoint']}` | {e['requests']:,} | {e['failures']} "
                         f"| {e['rps']:,.0f} | {jobs} | {e['p50_ms']:.0f} | {e['p99_ms']:.0f} |")
    lines += ["", "CPU (cores busy on average during each scenario; the machine has "
              f"{m['cores']}) and the API's CPU per request:", "",
              "| scenario | api (uvicorn) | redis | scheduler | locust | whole machine "
              "| API CPU ms / request |", "|---|---|---|---|---|---|---|"]
    for name, s in r["scenarios"].items():
        c = s["cpu_cores"]
        lines.append(f"| {name} | {c['api']} | {c['redis']} | {c['scheduler']} | {c['locust']}"
                     f" | {c['machine']} | {s['api_cpu_ms_per_request']} |")
    lag = r["fire_lag_ms"]
    lines += ["", f"Fire lag of the {lag['n']:,} one-shot runs the load created (slot -> "
              f"enqueued): p50 {lag['p50']:.0f} ms, p90 {lag['p90']:.0f} ms, p99 "
              f"{lag['p99']:.0f} ms, max {lag['max']:.0f} ms.", END]
    return "\n".join(lines)


def write_doc(block: str) -> None:
    text = DOC.read_text()
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text,
                      flags=re.S)
    else:
        text += f"\n## REST API (Locust)\n\n{block}\n"
    DOC.write_text(text)


def main(argv: list[str] | None = None) -> None:
    a = parse(argv)
    result = run(a)
    out = REPO / "load" / "results"
    out.mkdir(exist_ok=True)
    (out / f"api-{int(time.time())}.json").write_text(json.dumps(result, indent=1))
    block = markdown(result)
    print(block)
    if not a.no_write:
        write_doc(block)


if __name__ == "__main__":
    main()
