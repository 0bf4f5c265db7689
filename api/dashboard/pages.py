"""What each dashboard page shows: the jobs table, a job with its runs and chart, queues,
dead letters; rendered to HTML with the templates in api/templates.

Owns: reading each page's data through the API (session.call) and shaping it for its
template, and rendering a whole page or just its <main> (live updates). Must not: reach
the engine (everything comes through the API's own endpoints, under the session's key).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.requests import Request

from api.dashboard import words
from api.dashboard.session import call, csrf_token
from api.http import state
from api.problems import ApiError

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent.parent / "templates"),
    autoescape=True, trim_blocks=True, lstrip_blocks=True)
JOBS_SHOWN = 200
RUNS_SHOWN = 60


@dataclass
class Page:
    template: str
    title: str
    nav: str
    ctx: dict[str, Any] = field(default_factory=dict)
    live: str = ""  # what /ui/events re-renders ("" = no live updates)


async def _get(request: Request, path: str, params: dict[str, str] | None = None,
               query: dict[str, str] | None = None) -> Any:
    status, data = await call(request, "GET", path, params, urlencode(query or {}))
    if status >= 400:
        raise ApiError(status, (data or {}).get("title", "Error"), (data or {}).get("detail", ""))
    return data


def _job_row(j: dict[str, Any], now: int) -> dict[str, Any]:
    return {**j, "words": words.schedule(j["schedule"]),
            "next_rel": words.relative(j["next_ms"], now) if j["state"] == "active" else "—",
            "next_abs": words.instant(j["next_ms"]),
            "last_rel": words.relative(j["last_slot_ms"], now),
            "last_abs": words.instant(j["last_slot_ms"])}


async def jobs_page(request: Request, arg: str) -> Page:
    now = await state(request).clock.now_ms()
    query = {"limit": str(JOBS_SHOWN)}
    cursor = request.query_params.get("cursor", "")
    if cursor:
        query["cursor"] = cursor
    page = await _get(request, "/api/v1/jobs", query=query)
    return Page("jobs.html", "Jobs", "jobs", {
        "jobs": [_job_row(j, now) for j in page["items"]], "now": words.instant(now),
        "next_cursor": quote(page["next_cursor"] or "")}, live="" if cursor else "jobs")


def _run_row(r: dict[str, Any]) -> dict[str, Any]:
    took = (r["finished_ms"] - r["started_ms"]) if r.get("finished_ms") and \
        r.get("started_ms") else None
    return {**r, "slot": words.instant(r["slot_ms"]), "started": words.instant(
        r.get("started_ms")), "took": words.duration(took), "error": (r.get("error") or "")[:300]}


async def job_page(request: Request, job_id: str) -> Page:
    now = await state(request).clock.now_ms()
    p = {"job_id": job_id}
    job = await _get(request, "/api/v1/jobs/{job_id}", p)
    runs = (await _get(request, "/api/v1/jobs/{job_id}/runs", p,
                       {"limit": str(RUNS_SHOWN)}))["items"]
    preview = [] if job["state"] != "active" else \
        (await _get(request, "/api/v1/jobs/{job_id}/preview", p, {"count": "5"}))["times"]
    return Page("job.html", job["name"] or job_id, "jobs", {
        "j": _job_row(job, now), "runs": [_run_row(r) for r in runs], "preview": preview,
        "chart": words.chart(runs), "colours": words.COLOURS}, live=f"job:{job_id}")


async def queues_page(request: Request, arg: str) -> Page:
    queues = (await _get(request, "/api/v1/queues"))["items"]
    status = await _get(request, "/api/v1/status")
    for q in queues:
        q["lag"] = words.duration(q["oldest_age_ms"]) or "—"
    return Page("queues.html", "Queues", "queues", {
        "queues": queues, "status": status, "now": words.instant(status["now_ms"]),
        "archive_lag": words.duration(status["archive_lag_ms"]) or "0"}, live="queues")


async def dead_page(request: Request, arg: str) -> Page:
    now = await state(request).clock.now_ms()
    items = (await _get(request, "/api/v1/dead-letters", query={"limit": "100"}))["items"]
    for d in items:
        d["at_rel"], d["at_abs"] = words.relative(d["at_ms"], now), words.instant(d["at_ms"])
    return Page("dead.html", "Dead letters", "dead", {"items": items}, live="dead")


PAGES = {"jobs": jobs_page, "job": job_page, "queues": queues_page, "dead": dead_page}


async def page_of(request: Request, live: str) -> Page:
    """The page a live name ("jobs", "job:<id>", ...) stands for."""
    kind, _, arg = live.partition(":")
    build = PAGES.get(kind)
    if build is None:
        raise ApiError(422, "Unprocessable Content", "page: jobs, job:<id>, queues or dead",
                       field="page")
    return await build(request, arg)


async def who(request: Request) -> str:
    st = state(request)
    if st.settings.api.dev_mode:
        return "dev mode · tenant default · admin"
    key = await st.key_for(request.cookies.get("rsched_key", ""))
    return f"tenant {key.tenant} · {key.role.value} · key {key.id}" if key else ""


def render_main(page: Page) -> str:
    return TEMPLATES.get_template(page.template).render(**page.ctx)


async def render(request: Request, page: Page) -> str:
    return TEMPLATES.get_template("page.html").render(
        main=page.template, title=page.title, nav=page.nav, live=page.live,
        csrf=csrf_token(request), who=await who(request),
        dev=state(request).settings.api.dev_mode, **page.ctx)
