"""Pure pieces of task kinds: recorded results, Retry-After, scrubbing, job definitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import msgspec
import pytest

from rsched.codec import decode_result, encode_result
from rsched.errors import ValidationError
from rsched.models import JobDef
from rsched.roles.kinds.http import retry_after
from rsched.roles.kinds.secrets import RunSecrets, SecretStore
from rsched.task_kinds import HttpTask, Secret, ShellTask, is_shell_queue


def test_results_are_json_and_none_records_nothing() -> None:
    assert encode_result(None) == ""
    assert decode_result(encode_result({"a": [1, "x"]})) == {"a": [1, "x"]}
    assert decode_result(encode_result("plain")) == "plain"
    assert decode_result("not json from an older worker") == "not json from an older worker"


def test_a_result_past_the_cap_is_still_valid_json_and_says_so() -> None:
    text = encode_result("é" * 5000, limit=1024)
    assert len(text.encode()) <= 1024
    out = decode_result(text)
    assert out["truncated"] is True and out["bytes"] == 10002 and out["head"].startswith('"é')


@pytest.mark.parametrize(("header", "seconds"), [
    (None, None), ("", None), ("soon", None), ("7", 7.0), ("999999", 86400.0)])
def test_retry_after_in_seconds(header: str | None, seconds: float | None) -> None:
    assert retry_after(header) == seconds


def test_retry_after_as_an_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    got = retry_after(format_datetime(when, usegmt=True))
    assert got is not None and 25 <= got <= 31
    assert retry_after(format_datetime(when - timedelta(hours=1), usegmt=True)) == 0.0


def test_scrub_masks_every_resolved_value_longest_first() -> None:
    store = SecretStore(None, {"RSCHED_SECRET_A": "abc", "RSCHED_SECRET_B": "abcdef"})
    run = RunSecrets(store)
    assert run.value(Secret("a")) == "abc" and run.value("literal") == "literal"
    assert run.json({"x": [{"secret": "b"}], "y": {"secret": "b", "other": 1}}) == \
        {"x": ["abcdef"], "y": {"secret": "b", "other": 1}}
    assert run.scrub("abcdef abc ab") == "*** *** ab"
    assert run.longest == 6


def test_a_job_has_exactly_one_kind() -> None:
    with pytest.raises(ValidationError, match="exactly one of task, http or shell"):
        JobDef()
    with pytest.raises(ValidationError, match=r"\(got task, http\)"):
        JobDef(task="t", http=HttpTask(url="http://x"))
    with pytest.raises(ValidationError, match="Python tasks only"):
        JobDef(http=HttpTask(url="http://x"), args=[1])
    assert JobDef(http=HttpTask(url="http://x")).spec().task == "rsched.http"
    assert JobDef(shell=ShellTask(argv=["true"]), queue="shell").spec().task == "rsched.shell"


@pytest.mark.parametrize(("http", "message"), [
    ({"url": "http://x", "json": {}, "body": "b"}, "not both"),
    ({"url": "http://x", "headers": {"Bad Name": "v"}}, "invalid header name"),
    ({"url": "http://x", "headers": {"A": "v\r\nB: w"}}, "line breaks"),
    ({"url": "http://x", "json": {"k": {"secret": "has space"}}}, "secret name"),
    ({"url": "http://x", "method": "TRACE"}, "method"),
    ({"url": "http://x", "success_codes": [99]}, ">= 100"),
])
def test_http_tasks_are_checked_when_decoded(http: dict[str, object], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.convert({"http": http}, JobDef)


def test_stored_specs_without_kinds_still_decode() -> None:
    from rsched.codec import decode_spec, encode
    old = encode({"task": "t", "args": [1]})
    spec = decode_spec(old)
    assert (spec.task, spec.http, spec.shell, spec.tenant) == ("t", None, None, "default")


@pytest.mark.parametrize(("queue", "shell"), [
    ("shell", True), ("shell-backups", True), ("shell.x", True), ("shell_x", True),
    ("shellfish", False), ("default", False), ("myshell", False)])
def test_shell_queues(queue: str, shell: bool) -> None:
    assert is_shell_queue(queue) is shell


def test_secret_variables_are_not_settings() -> None:
    from rsched.settings import Settings
    s = Settings.from_env({"RSCHED_SECRET_API_TOKEN": "v", "RSCHED_WORKER__SECRETS_FILE": "f",
                           "RSCHED_WORKER__HTTP_MAX_CONNECTIONS": "7"})
    assert (s.worker.secrets_file, s.worker.http_max_connections) == ("f", 7)
