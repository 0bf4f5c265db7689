"""Shell tasks: exit codes, output tails, the process group's end, the allow flag."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from rsched.errors import ConfigError, ValidationError
from rsched.models import JobDef, RetryPolicy, RunStatus
from rsched.settings import Settings, WorkerSettings
from rsched.task_kinds import ShellTask

ONCE = RetryPolicy(max_attempts=1)
SHELL = {"queues": ["shell"], "allow_shell": True}


def shell_job(**kw: Any) -> JobDef:
    job: dict[str, Any] = {"queue": "shell", "retry": ONCE, **kw}
    task = {k: job.pop(k) for k in list(job) if k in ShellTask.__struct_fields__}
    return JobDef(shell=ShellTask(**task), **job)


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie (a zombie has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


async def test_exit_zero_succeeds_with_exit_code_and_output_tails(make_system: Any) -> None:
    sys_ = await make_system(**SHELL)
    job = await sys_.client.schedule(shell_job(argv=[
        sys.executable, "-c", "import sys; print('a' * 10000 + 'END'); "
                              "print('warn', file=sys.stderr)"]))
    await sys_.step()
    run = await sys_.last_run(job)
    assert run.status is RunStatus.SUCCEEDED
    assert run.result["exit_code"] == 0
    assert run.result["stdout"].endswith("aEND\n") and len(run.result["stdout"]) == 4096
    assert run.result["stderr"] == "warn\n"


async def test_a_nonzero_exit_is_a_failed_attempt_naming_code_and_stderr(
        make_system: Any) -> None:
    sys_ = await make_system(**SHELL)
    job = await sys_.client.schedule(shell_job(argv=["echo broken >&2; exit 3"], shell=True,
                                               env={"X": "1"}))
    await sys_.step()
    run = await sys_.last_run(job)
    assert run.status is RunStatus.DEAD
    assert run.error == "exit code 3; stderr: broken"


async def test_argv_is_not_a_shell_unless_asked(make_system: Any, tmp_path: Path) -> None:
    sys_ = await make_system(**SHELL)
    job = await sys_.client.schedule(shell_job(argv=["echo", "$HOME; touch x"],
                                               cwd=str(tmp_path)))
    await sys_.step()
    run = await sys_.last_run(job)
    assert run.result["stdout"] == "$HOME; touch x\n"
    assert not (tmp_path / "x").exists()


async def test_the_worker_environment_is_passed_without_its_rsched_variables(
        make_system: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RSCHED_SECRET_HIDDEN", "do-not-pass")
    monkeypatch.setenv("PLAIN_VAR", "visible")
    sys_ = await make_system(**SHELL)
    job = await sys_.client.schedule(shell_job(argv=["env"], env={"MINE": "x"}))
    await sys_.step()
    out = (await sys_.last_run(job)).result["stdout"]
    assert "PLAIN_VAR=visible" in out and "MINE=x" in out
    assert "RSCHED_" not in out


async def test_a_timeout_kills_the_whole_process_group(make_system: Any,
                                                       tmp_path: Path) -> None:
    sys_ = await make_system(**SHELL)
    script = "echo $$ > pids; sleep 60 & echo $! >> pids; (sleep 60; true) & echo $! >> pids; wait"
    job = await sys_.client.schedule(shell_job(argv=[script], shell=True, cwd=str(tmp_path),
                                               timeout_s=0.5))
    await sys_.step()
    assert (await sys_.last_run(job)).status is RunStatus.TIMED_OUT
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    assert len(pids) == 3
    assert [p for p in pids if alive(p)] == []


async def test_children_left_behind_by_a_finished_command_are_killed(
        make_system: Any, tmp_path: Path) -> None:
    sys_ = await make_system(**SHELL)
    job = await sys_.client.schedule(shell_job(
        argv=["sleep 60 & echo $! > pid; echo started"], shell=True, cwd=str(tmp_path)))
    await sys_.step()
    run = await sys_.last_run(job)
    assert run.status is RunStatus.SUCCEEDED and run.result["stdout"] == "started\n"
    assert not alive(int((tmp_path / "pid").read_text()))


async def test_a_missing_program_fails_without_retry(make_system: Any) -> None:
    sys_ = await make_system(**SHELL)
    job = await sys_.client.schedule(shell_job(argv=["/no/such/program"],
                                               retry=RetryPolicy(max_attempts=3)))
    await sys_.step()
    run = await sys_.last_run(job)
    assert run.status is RunStatus.FAILED and "cannot start" in (run.error or "")


async def test_a_worker_without_the_allow_flag_refuses_a_shell_task(
        make_system: Any, tmp_path: Path) -> None:
    sys_ = await make_system()  # queue "default", no allow_shell
    job = shell_job(argv=["touch ran"], shell=True, cwd=str(tmp_path), queue="default",
                    retry=RetryPolicy(max_attempts=3))
    # The client refuses a shell job outside the shell queues ...
    with pytest.raises(ValidationError, match="shell jobs go to queue 'shell'"):
        await sys_.client.schedule(job)
    # ... so put one there past it, as an older or rogue writer could.
    now = sys_.clock.ms
    await sys_.client.engine.jobs.schedule_job("rogue", job, now_ms=now, next_ms=now,
                                               expect_version=0)
    await sys_.step()
    run = await sys_.last_run("rogue")
    assert run.status is RunStatus.FAILED and "--allow-shell" in (run.error or "")
    assert not (tmp_path / "ran").exists()


def test_only_a_worker_allowed_to_run_shell_tasks_may_read_a_shell_queue() -> None:
    with pytest.raises(ConfigError, match="RSCHED_WORKER__ALLOW_SHELL=true"):
        WorkerSettings(queues=["default", "shell-backups"])
    with pytest.raises(ConfigError, match="allow-shell"):
        Settings.from_env({"RSCHED_WORKER__QUEUES": "shell"})
    s = Settings.from_env({"RSCHED_WORKER__QUEUES": "shell,default",
                           "RSCHED_WORKER__ALLOW_SHELL": "true"})
    assert s.worker.allow_shell and s.worker.queues == ["shell", "default"]
    assert WorkerSettings(queues=["shellfish"]).queues == ["shellfish"]  # not a shell queue


@pytest.mark.parametrize(("task", "message"), [
    ({"argv": []}, "length >= 1"),
    ({"argv": ["a", "b"], "shell": True}, "one command line"),
    ({"argv": ["x"], "env": {"1BAD": "v"}}, "invalid variable name"),
    ({"argv": ["x"], "env": {"RSCHED_REDIS__URL": "v"}}, "worker's own"),
    ({"argv": ["x"], "env": {"K": {"secret": "no spaces"}}}, "secret"),
])
def test_shell_tasks_are_checked_when_decoded(task: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.convert({"shell": task, "queue": "shell"}, JobDef)


def test_the_checks_leave_no_orphans_helper_honest() -> None:
    assert alive(os.getpid())
    assert not alive(2**22 + 1)
