"""The web dashboard at /: pages, login/logout, action buttons and live updates (SSE).

Owns: the dashboard's routes and their HTTP behaviour (redirect to /login without a
session, 403 for cross-site POSTs, problem+json for refused actions, the event stream).
Must not: reach the engine: pages and actions go through the API's endpoints under the
session's key (api/dashboard/session.py), so roles, tenants and rate limits are the API's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from api.dashboard import pages, session
from api.http import json, state
from api.problems import ApiError, problem

LIVE_S = 1.0  # how often a live page is re-rendered (sent only when it changed)
KEEPALIVE_S = 15.0
STATIC = Path(__file__).resolve().parent.parent / "static"


async def _show(request: Request, build: pages.Page | None = None, live: str = "") -> Response:
    if session.session_id(request) is None:
        return RedirectResponse("/login", 303)
    try:
        page = build or await pages.page_of(request, live)
    except ApiError as exc:
        if exc.status == 401:
            response = RedirectResponse("/login", 303)
            session.set_cookie(request, response, None)
            return response
        page = pages.Page("error.html", exc.title, "jobs", {"error": exc})
        return HTMLResponse(await pages.render(request, page), exc.status)
    if request.headers.get("x-fragment"):
        return HTMLResponse(pages.render_main(page))
    return HTMLResponse(await pages.render(request, page))


async def index(request: Request) -> Response:
    return await _show(request, live="jobs")


async def job(request: Request) -> Response:
    return await _show(request, live=f"job:{request.path_params['job_id']}")


async def queues(request: Request) -> Response:
    return await _show(request, live="queues")


async def dead(request: Request) -> Response:
    return await _show(request, live="dead")


async def login_form(request: Request, error: str = "", status: int = 200) -> Response:
    if state(request).settings.api.dev_mode:
        return RedirectResponse("/", 303)
    page = pages.Page("login.html", "Log in", "", {"error": error})
    return HTMLResponse(await pages.render(request, page), status)


async def login(request: Request) -> Response:
    try:
        session.check_post(request, token=False)
    except ApiError as exc:
        return problem(exc, request.url.path)
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    key = (form.get("key") or [""])[0].strip()
    if not key or await state(request).key_for(key) is None:
        return await login_form(request, "That key is not valid (or was revoked).", 401)
    response = RedirectResponse("/", 303)
    session.set_cookie(request, response, key)
    return response


async def logout(request: Request) -> Response:
    try:
        session.check_post(request)
    except ApiError as exc:
        return problem(exc, request.url.path)
    response = json({"message": "logged out"})
    session.set_cookie(request, response, None)
    return response


# (dashboard action) -> (API method, API path template, message)
ACTIONS = {
    "pause": ("POST", "/api/v1/jobs/{job_id}/pause", "paused"),
    "resume": ("POST", "/api/v1/jobs/{job_id}/resume", "resumed"),
    "run": ("POST", "/api/v1/jobs/{job_id}/run", "run started"),
    "cancel": ("DELETE", "/api/v1/jobs/{job_id}", "cancelled"),
    "cancel_run": ("POST", "/api/v1/runs/{run_id}/cancel", "run cancelled"),
    "retry_dead": ("POST", "/api/v1/dead-letters/{dead_id}/retry", "retried"),
    "delete_dead": ("DELETE", "/api/v1/dead-letters/{dead_id}", "deleted"),
    "retry_all": ("POST", "/api/v1/dead-letters:retry", "retried"),
}


def _action(name: str) -> Route:
    method, path, message = ACTIONS[name]

    async def act(request: Request) -> Response:
        try:
            session.check_post(request)
            status, data = await session.call(request, method, path,
                                              dict(request.path_params))
        except ApiError as exc:
            return problem(exc, request.url.path)
        if status >= 400:
            return json(data, status)
        return json({"message": message, "result": data})

    act.__name__ = f"ui_{name}"
    suffix = {"cancel_run": "/ui/runs/{run_id}/cancel",
              "retry_dead": "/ui/dead-letters/{dead_id}/retry",
              "delete_dead": "/ui/dead-letters/{dead_id}/delete",
              "retry_all": "/ui/dead-letters/retry"}.get(name, f"/ui/jobs/{{job_id}}/{name}")
    return Route(suffix, act, methods=["POST"])


async def _stream(request: Request, live: str) -> AsyncIterator[str]:
    last, quiet = "", 0.0
    yield "retry: 3000\n\n"
    while True:
        try:
            html = pages.render_main(await pages.page_of(request, live))
        except ApiError as exc:
            yield f"event: gone\ndata: {exc.status}\n\n"
            return
        if html != last:
            last, quiet = html, 0.0
            yield "event: main\n" + "".join(f"data: {line}\n" for line in html.split("\n")) + "\n"
        elif quiet >= KEEPALIVE_S:
            quiet = 0.0
            yield ": keep-alive\n\n"
        await asyncio.sleep(LIVE_S)
        quiet += LIVE_S


async def events(request: Request) -> Response:
    """Server-sent events: the page's <main>, whenever it changes."""
    if session.session_id(request) is None:
        return problem(ApiError(401, "Unauthorized", "log in first"), request.url.path)
    live = request.query_params.get("page", "")
    try:
        await pages.page_of(request, live)  # 4xx now rather than inside the stream
    except ApiError as exc:
        return problem(exc, request.url.path)
    return StreamingResponse(_stream(request, live), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


ROUTES = [
    Route("/", index, methods=["GET"]),
    Route("/jobs/{job_id}", job, methods=["GET"]),
    Route("/queues", queues, methods=["GET"]),
    Route("/dead-letters", dead, methods=["GET"]),
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/ui/events", events, methods=["GET"]),
    *[_action(name) for name in ACTIONS],
    Mount("/ui/static", app=StaticFiles(directory=STATIC), name="ui-static"),
]
