"""The engine benchmark's report: machine facts, CPU per phase, Redis command costs and
the markdown row.

Owns: turning raw CPU snapshots and INFO replies into per-job / per-second figures, and
formatting. Must not: start processes or talk to Redis.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from load.procs import REPO

ROLES = ("worker", "scheduler", "redis", "httpd")


def cores() -> int:
    return os.cpu_count() or 1


def by_role(snapshot: dict[str, float]) -> dict[str, float]:
    """CPU seconds summed per role from {process name: CPU seconds}."""
    out = dict.fromkeys(ROLES, 0.0)
    for name, seconds in snapshot.items():
        role = name.split("-", 1)[0]
        if role in out:
            out[role] += seconds
    return out


def delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {r: b[r] - a[r] for r in a}


def per_unit(used: dict[str, float], units: float, scale: float = 1e6) -> dict[str, float]:
    """µs of CPU per unit (a job, or a second when scale is 1e6 and units are seconds)."""
    out = {r: round(v / max(1e-9, units) * scale, 1) for r, v in used.items() if r != "httpd"
           or v}
    out["scheduler+worker"] = round(out["scheduler"] + out["worker"], 1)
    return out


def cpu_phases(snaps: list[dict[str, float]], idle_s: float, jobs: int) -> dict[str, Any]:
    """snaps: CPU per role at [idle start, idle end (= creation start), creation end,
    execution end]. Idle as µs per second; creation and execution as µs per job; "all_in"
    is creation + execution per job (the idle time inside the execution window, e.g.
    between spread fires, is in the execution figure)."""
    idle, create, execute = (delta(snaps[i], snaps[i + 1]) for i in range(3))
    both = {r: create[r] + execute[r] for r in create}
    return {"idle_us_per_s": per_unit(idle, idle_s), "create_us_per_job": per_unit(create, jobs),
            "execute_us_per_job": per_unit(execute, jobs),
            "all_in_us_per_job": per_unit(both, jobs)}


def command_costs(stats: dict[str, Any], jobs: int) -> dict[str, dict[str, float]]:
    """Redis calls and CPU µs per job by command (commands inside scripts included),
    from INFO commandstats reset when the measured phase began; costliest first."""
    out = {name.removeprefix("cmdstat_"): {"calls": round(v["calls"] / max(1, jobs), 2),
                                           "usec": round(v["usec"] / max(1, jobs), 2)}
           for name, v in stats.items()}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["usec"]))


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
    return {"cpu": model, "cores": cores(), "load_avg_1m": os.getloadavg()[0],
            "mem_gib": round(mem / 2**20, 1), "python": platform.python_version(),
            "redis_server": redis_v, "commit": commit, **pkgs}


def markdown_row(r: dict[str, Any]) -> str:
    p, c, cpu = r["params"], r["counts"], r["cpu_us_per_job"]
    fl, sl = r["fire_lag_ms"], r["start_lag_ms"]
    rate = {"spread": f"{p['rate']:g}/s", "burst": "burst",
            "recurring": f"{p['jobs'] * 1000 / p['every_ms']:g}/s"}[r["scenario"]]
    jobs = c["expected"]
    pre = f" +{p['preload']:,} far" if p["preload"] else ""
    allin = r.get("cpu_phases", {}).get("all_in_us_per_job", {})
    return (f"| {r['scenario']}{pre} | {p.get('task', 'noop')} | {p['concurrency']} "
            f"| {jobs:,} | {rate} | {p['schedulers']}×{p['workers']} "
            f"| {r['create']['per_s']:,} | {fl['p50']:g} / {fl['p99']:g} / {fl['max']:g} "
            f"| {sl['p50']:g} / {sl['p90']:g} / {sl['p99']:g} / {sl['max']:g} "
            f"| {r['throughput_per_s']:,} | {cpu['workers']:g} / {cpu['schedulers']:g} / "
            f"{cpu['redis']:g} | {allin.get('scheduler+worker', 0):g} "
            f"| {c['lost']} | {c['duplicated']} | {c['missed_slots']} "
            f"| {tail_ms(sl):g} | {r.get('other_cores_busy', 0):g} |")


def tail_ms(start_lag: dict[str, float]) -> float:
    """How far the last start lies beyond a steady drain's (p99 / 0.99): a straggler tail
    (runs left behind by a timer, a retry or a blocked read) shows here, not in p99."""
    return round(start_lag["max"] - start_lag["p99"] / 0.99, 1)


HEADER = ("| scenario | task | conc | runs | fires | S×W | created/s | fire lag p50/p99/max ms "
          "| start lag p50/p90/p99/max ms | jobs/s e2e | CPU µs/job W/S/Redis "
          "| S+W all-in µs/job | lost | dup | missed | tail ms | other cores busy |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
