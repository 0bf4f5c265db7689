"""Debian's chromium, headless, against `rsched api` on a real port: log in with a key,
see a job, click Pause, see it paused; a change made through the API then reaches the open
page over server-sent events; a screenshot lands in the test's tmp dir."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rsched.devservers import free_port
from tests.support.cdp import Browser
from tests.support.procs import RSCHED, run_cli

STATE = "document.querySelector('tr[data-job] .state').textContent"


@pytest.fixture
def served(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    env = {"RSCHED_REDIS__URL": redis_url, "RSCHED_REDIS__PREFIX": prefix,
           "RSCHED_REDIS__SHARDS": "4", "RSCHED_ARCHIVER__DSN": ""}
    port = free_port()
    with (tmp_path / "api.log").open("wb") as log:
        proc = subprocess.Popen([*RSCHED, "api", "--port", str(port)], stdout=log, stderr=log,
                                env={**os.environ, **env})
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and proc.poll() is None, "api down"
                    time.sleep(0.1)
            yield base, env
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_chromium_logs_in_pauses_a_job_and_sees_live_updates(
        served: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    base, env = served
    made = run_cli("keys", "create", "acme", "--role", "write", env=env)
    key = made.stdout.splitlines()[0]
    auth = {"Authorization": f"Bearer {key}"}
    job = httpx.post(f"{base}/api/v1/jobs", headers=auth, json={
        "task": "reports.nightly", "name": "nightly-report",
        "schedule": {"type": "cron", "expr": "0 2 * * *", "tz": "Europe/Paris"}}).json()
    browser = Browser(tmp_path / "profile")
    try:
        browser.goto(f"{base}/")
        assert browser.js("location.pathname") == "/login"
        browser.js(f"document.querySelector('input[name=key]').value = {json.dumps(key)};"
                   "document.querySelector('form.login').submit(); true")
        browser.wait_for("location.pathname === '/' && !!document.querySelector('tr[data-job]')")
        assert "nightly-report" in browser.js("document.querySelector('table.jobs').innerText")
        assert "every day at 02:00 (Europe/Paris)" in browser.js("document.body.innerText")
        assert browser.js("document.cookie") == ""  # the key is HttpOnly: no script sees it
        assert browser.js(STATE) == "active"

        browser.js("[...document.querySelectorAll('button')]"
                   ".find(b => b.textContent === 'Pause').click(); true")
        browser.wait_for(f"{STATE} === 'paused'")
        got = httpx.get(f"{base}/api/v1/jobs/{job['id']}", headers=auth).json()
        assert got["state"] == "paused"
        browser.wait_for("document.getElementById('live-dot').className === 'on'")

        httpx.post(f"{base}/api/v1/jobs/{job['id']}/resume", headers=auth)
        browser.wait_for(f"{STATE} === 'active'")  # pushed over SSE, no reload
        shot = browser.screenshot(tmp_path / "dashboard.png")
        assert shot.stat().st_size > 10_000 and shot.read_bytes()[:4] == b"\x89PNG"
    finally:
        browser.close()
