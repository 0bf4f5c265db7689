"""The engine benchmark (load/bench.py) end to end at a tiny scale: it must count every run
exactly once and write its JSON. No timings are asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from load import bench

KEYS = {"scenario", "params", "create", "counts", "fire_lag_ms", "start_lag_ms",
        "throughput_per_s", "cpu_us_per_job", "machine", "redis_commands_per_job",
        "cpu_phases", "queue_wait_ms", "start_gaps"}


@pytest.mark.parametrize("scenario", ["spread", "recurring", "recurring-cron", "redis-task"])
def test_bench_counts_every_run_once_and_writes_json(tmp_path: Path, scenario: str) -> None:
    args = ["--scenario", scenario, "--jobs", "200", "--rate", "400", "--schedulers", "1",
            "--workers", "1", "--shards", "4", "--lead-s", "1.5", "--out", str(tmp_path),
            "--idle-s", "0.2"]
    if scenario == "redis-task":  # each run makes one async Redis round trip of its own
        args[1] = "burst"
        # a blocking pool: redis-py's default pool raises past 100 connections
        args += ["--task", "redis", "--create-inflight", "20", "--task-max-connections", "50"]
    if scenario == "recurring":
        args[3] = "50"
        args += ["--every-ms", "500", "--duration-s", "2"]
    if scenario == "recurring-cron":  # a per-second cron in a DST zone; triggers all differ
        args[1], args[3] = "recurring", "50"
        args += ["--cron", "*/1 * * * * *", "--tz", "Europe/Berlin", "--own-trigger",
                 "--duration-s", "2"]
    result = bench.run(bench.parse(args))

    saved = json.loads(Path(result["saved_to"]).read_text())
    assert KEYS <= set(saved)
    counts = saved["counts"]
    assert saved["finished"]
    if scenario == "recurring-cron":  # 2 whole seconds each, a third for a later end
        assert 50 * 2 <= counts["expected"] <= 50 * 3
        assert saved["params"]["cron"] == "*/1 * * * * *" and saved["params"]["own_trigger"]
    else:
        assert counts["expected"] == (50 * 4 if scenario == "recurring" else 200)
    assert counts["lost"] == counts["duplicated"] == counts["missed_slots"] == 0
    assert counts["unexpected"] == counts["executed_twice"] == 0
    assert counts["completed"] == counts["expected"]
    assert saved["fire_lag_ms"]["n"] == counts["expected"]
    worst = saved["worst_fire_lag_windows"]
    assert 0 < len(worst) <= 10
    assert worst[0]["fire_lag_ms"] == saved["fire_lag_ms"]["max"]
    assert all(a["fire_lag_ms"] >= b["fire_lag_ms"] for a, b in zip(worst, worst[1:], strict=False))
    phases = saved["cpu_phases"]
    assert set(phases) == {"idle_us_per_s", "create_us_per_job", "execute_us_per_job",
                           "all_in_us_per_job"}
    assert phases["execute_us_per_job"]["worker"] > 0
    if scenario == "redis-task":
        assert saved["params"]["task"] == "redis"
        assert saved["create"]["path"] == "schedule x20"
        # the task's own GET reached Redis once per run
        assert saved["redis_commands_per_job"]["get"]["calls"] >= 1.0  # + lease reads
        assert saved["start_lag_ms"]["n"] == 200
    assert bench.markdown_row(saved).count("|") == bench.HEADER.splitlines()[0].count("|")
