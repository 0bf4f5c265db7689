"""The README's examples work as written: its Python example runs against a private
redis-server (RSCHED_REDIS__URL) and a worker started as it says runs the task; every
`rsched` command and `make` target it names exists."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rsched.cli import app
from tests.support.procs import REPO, run_cli, watch_until

README = (REPO / "README.md").read_text()
# `python -P`: the current directory is not put on sys.path (as with the installed script).
RSCHED_SCRIPT = [sys.executable, "-P", "-c", "from rsched.cli import main; main()"]


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_python_example_runs_as_written_and_a_worker_runs_its_task(
        redis_url: str, tmp_path: Path) -> None:
    [example] = blocks("python")
    assert "Save this as `emails.py`" in README
    (tmp_path / "emails.py").write_text(example)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RSCHED_")},
           "RSCHED_REDIS__URL": redis_url, "RSCHED_REDIS__PREFIX": f"rm{uuid.uuid4().hex[:8]}"}
    out = subprocess.run([sys.executable, "emails.py"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "status=<RunStatus.QUEUED" in out.stdout, out.stdout
    worker = subprocess.Popen([*RSCHED_SCRIPT, "worker", "--module", "emails"], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    lines, rest = watch_until(worker, lambda lines: any("sending to a@b.c" in ln
                                                        for ln in lines))
    assert any("sending to a@b.c" in ln for ln in lines), "".join(lines) + rest
    assert worker.returncode == 0, rest


def named_commands() -> list[list[str]]:
    """Every `rsched <command> [<sub>|<sub>...]` the README names in backticks."""
    out: list[list[str]] = []
    for cmd, subs in re.findall(r"`rsched ([a-z-]+)((?: [a-z-]+(?:\|[a-z-]+)*)?)", README):
        if subs.strip():
            out += [[cmd, sub] for sub in subs.strip().split("|")]
        else:
            out.append([cmd])
    unique = {tuple(c[:1] if c[0] in ("worker", "dev") else c): None for c in out}
    return [list(c) for c in unique]


@pytest.mark.parametrize("command", named_commands(), ids=" ".join)
def test_every_rsched_command_the_readme_names_exists(command: list[str]) -> None:
    # in-process: a subprocess per command cost ~2 s of imports each
    out = CliRunner().invoke(app, [*command, "--help"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "Usage: " in out.output


def test_the_installed_entry_point_answers_help() -> None:
    out = run_cli("--help")
    assert out.returncode == 0 and "jobs" in out.stdout and "apply" in out.stdout, out.stderr


def test_make_targets_the_readme_names_exist() -> None:
    [shell] = blocks("sh")
    targets = re.findall(r"^make (\w+)", shell, flags=re.M)
    assert targets == ["run", "test"]
    out = subprocess.run(["make", "-n", *targets], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "rsched dev" in out.stdout and "pytest" in out.stdout
