"""The engine benchmark (load/bench.py) end to end at a tiny scale: it must count every run
exactly once and write its JSON. No timings are asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from load import bench

KEYS = {"scenario", "params", "create", "counts", "fire_lag_ms", "start_lag_ms",
        "throughput_per_s", "cpu_us_per_job", "machine", "redis_commands_per_job"}


@pytest.mark.parametrize("scenario", ["spread", "recurring"])
def test_bench_counts_every_run_once_and_writes_json(tmp_path: Path, scenario: str) -> None:
    args = ["--scenario", scenario, "--jobs", "200", "--rate", "400", "--schedulers", "1",
            "--workers", "1", "--shards", "4", "--lead-s", "1.5", "--out", str(tmp_path)]
    if scenario == "recurring":
        args[3] = "50"
        args += ["--every-ms", "500", "--duration-s", "2"]
    result = bench.run(bench.parse(args))

    saved = json.loads(Path(result["saved_to"]).read_text())
    assert KEYS <= set(saved)
    counts = saved["counts"]
    assert saved["finished"]
    assert counts["expected"] == (200 if scenario == "spread" else 50 * 4)
    assert counts["lost"] == counts["duplicated"] == counts["missed_slots"] == 0
    assert counts["unexpected"] == counts["executed_twice"] == 0
    assert counts["completed"] == counts["expected"]
    assert saved["fire_lag_ms"]["n"] == counts["expected"]
    worst = saved["worst_fire_lag_windows"]
    assert 0 < len(worst) <= 10
    assert worst[0]["fire_lag_ms"] == saved["fire_lag_ms"]["max"]
    assert all(a["fire_lag_ms"] >= b["fire_lag_ms"] for a, b in zip(worst, worst[1:], strict=False))
    assert bench.markdown_row(saved).count("|") == bench.HEADER.splitlines()[0].count("|")
