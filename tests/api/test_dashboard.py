"""The dashboard through httpx: login with a key (HttpOnly cookie), pages per tenant,
actions refused cross-site or without the CSRF token, dev mode, words for schedules."""

from __future__ import annotations

import re
from typing import Any

import httpx

from api.dashboard import words
from rsched.models import Role
from tests.api.conftest import Api

ORIGIN = {"Origin": "http://test"}
EVERY = {"type": "cron", "expr": "0 2 * * *", "tz": "Europe/Paris"}


def token(html: str) -> str:
    m = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', html)
    assert m, html[:300]
    return m.group(1)


async def logged_in(api: Api, tenant: str = "acme", role: Role = Role.WRITE
                    ) -> tuple[httpx.AsyncClient, str]:
    browser = api.anonymous()
    r = await browser.post("/login", content=f"key={await api.key(tenant, role)}",
                           headers={**ORIGIN, "Content-Type":
                                    "application/x-www-form-urlencoded"})
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    page = await browser.get("/")
    assert page.status_code == 200
    return browser, token(page.text)


async def test_login_required_and_bad_keys_refused(api: Api) -> None:
    anon = api.anonymous()
    r = await anon.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert "API key" in (await anon.get("/login")).text
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    bad = await anon.post("/login", content="key=rsk_nope", headers={**ORIGIN, **form})
    assert bad.status_code == 401 and "not valid" in bad.text
    cross = await anon.post("/login", content=f"key={await api.key()}",
                            headers={"Origin": "http://evil.example", **form})
    assert cross.status_code == 403
    assert (await anon.get("/ui/events?page=jobs")).status_code == 401


async def test_jobs_page_shows_the_tenants_jobs_in_words(api: Api) -> None:
    writer = await api.client("acme")
    await writer.post("/api/v1/jobs", json={"task": "t", "name": "nightly", "schedule": EVERY})
    other = await api.client("globex")
    await other.post("/api/v1/jobs", json={"task": "t", "name": "secret-job"})
    browser, _ = await logged_in(api)
    page = (await browser.get("/")).text
    assert "nightly" in page and "every day at 02:00 (Europe/Paris)" in page
    assert "secret-job" not in page
    assert 'data-live="jobs"' in page and "/ui/static/dashboard.js" in page
    assert "https://" not in page and "http://" not in page  # nothing from a CDN
    js = await browser.get("/ui/static/dashboard.js")
    assert js.status_code == 200 and "EventSource" in js.text


async def test_job_page_runs_chart_and_foreign_job(api: Api) -> None:
    writer = await api.client()
    job = (await writer.post("/api/v1/jobs", json={"task": "t", "schedule": EVERY})).json()
    await writer.post(f"/api/v1/jobs/{job['id']}/run")
    browser, _ = await logged_in(api)
    page = (await browser.get(f"/jobs/{job['id']}")).text
    assert "<svg" in page and f"{job['id']}:1" in page and "queued" in page
    assert page.count('class="chip"') == 5  # the next five fire times
    theirs = (await (await api.client("globex")).post("/api/v1/jobs", json={"task": "t"})).json()
    assert (await browser.get(f"/jobs/{theirs['id']}")).status_code == 404


async def test_actions_need_same_origin_and_token(api: Api) -> None:
    writer = await api.client()
    job = (await writer.post("/api/v1/jobs", json={"task": "t", "schedule": EVERY})).json()
    browser, csrf = await logged_in(api)
    url = f"/ui/jobs/{job['id']}/pause"
    assert (await browser.post(url, headers={"X-CSRF-Token": csrf})).status_code == 403
    evil = {"Origin": "http://evil.example", "X-CSRF-Token": csrf}
    assert (await browser.post(url, headers=evil)).status_code == 403
    assert (await browser.post(url, headers={**ORIGIN, "X-CSRF-Token": "0" * 64})
            ).status_code == 403
    ok = await browser.post(url, headers={**ORIGIN, "X-CSRF-Token": csrf})
    assert ok.status_code == 200 and ok.json()["message"] == "paused"
    assert (await writer.get(f"/api/v1/jobs/{job['id']}")).json()["state"] == "paused"
    again = await browser.post(url, headers={**ORIGIN, "X-CSRF-Token": csrf})
    assert again.status_code == 409  # the API's answer, passed through
    fragment = await browser.get("/", headers={"X-Fragment": "1"})
    assert "<html" not in fragment.text and "state-paused" in fragment.text
    for verb, state in (("resume", "active"), ("cancel", "cancelled")):
        r = await browser.post(f"/ui/jobs/{job['id']}/{verb}",
                               headers={**ORIGIN, "X-CSRF-Token": csrf})
        assert r.status_code == 200
        assert (await writer.get(f"/api/v1/jobs/{job['id']}")).json()["state"] == state


async def test_read_role_sees_but_cannot_act(api: Api) -> None:
    writer = await api.client()
    job = (await writer.post("/api/v1/jobs", json={"task": "t", "schedule": EVERY})).json()
    browser, csrf = await logged_in(api, role=Role.READ)
    r = await browser.post(f"/ui/jobs/{job['id']}/run", headers={**ORIGIN, "X-CSRF-Token": csrf})
    assert r.status_code == 403
    logout = await browser.post("/logout", headers={**ORIGIN, "X-CSRF-Token": csrf})
    assert logout.status_code == 200
    assert (await browser.get("/")).status_code == 303


async def test_queues_and_dead_letter_pages(make_api: Any) -> None:
    api = await make_api(dev_mode=True)
    browser = api.anonymous()
    await browser.post("/api/v1/jobs", json={"task": "t", "queue": "reports"})
    queues = await browser.get("/queues")
    assert queues.status_code == 200 and "reports" in queues.text
    assert "No dead letters" in (await browser.get("/dead-letters")).text
    assert (await browser.get("/login")).status_code == 303  # dev mode: no login
    assert (await browser.get("/ui/events?page=nope")).status_code == 422


def test_schedules_in_words() -> None:
    assert words.schedule({"type": "cron", "expr": "*/5 * * * *", "tz": "UTC"}) == \
        "every 5 minutes (UTC)"
    assert words.schedule({"type": "cron", "expr": "30 9 * * 1-5", "tz": "UTC"}) == \
        "at 09:30 on weekdays (UTC)"
    assert words.schedule({"type": "cron", "expr": "1-5 2 * * *", "tz": "UTC"}) == \
        "cron 1-5 2 * * * (UTC)"
    assert words.schedule({"type": "every", "every_ms": 90_000}) == "every 90 seconds"
    assert words.schedule({"type": "now"}) == "once, as soon as possible"
    assert words.duration(3_700_000) == "1 h 1 min"
