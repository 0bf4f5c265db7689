"""Run endpoints: a job's runs (Redis, then the archive, behind one cursor), one run,
cancelling one run.

Owns: the runs cursor ("r<n>|<slot>|<run id>" while reading Redis newest first by run
number, "a<slot>|<run id>" once in the archive) and tenant checks on runs.
Must not: write to the archive or reach Redis except through the Client and engine parts.
"""

from __future__ import annotations

import re
from typing import Any

from psycopg import Error as PgError
from psycopg_pool import PoolTimeout
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.http import ApiState, Principal, endpoint, json, query_int, state
from api.problems import ApiError, not_found
from api.routes.jobs import BASE
from api.schemas import RunCancelled, RunPage
from rsched.archive import history
from rsched.errors import Code, InvalidTransition, JobNotFound
from rsched.models import Role, Run
from rsched.names import JOB_ID

_CURSOR = re.compile(r"^(?:r(\d{1,12})\|(\d{1,16})\|(.*)|a(\d{1,16})\|(.+))$")
RUN_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,128}:\d{1,12}$")


class ArchiveDown(ApiError):
    def __init__(self, detail: str) -> None:
        super().__init__(503, "Service Unavailable", f"archive: {detail}")


async def _archive(st: ApiState, fn: Any, *args: Any, **kw: Any) -> Any:
    """Call a history query on a pooled connection; None when there is no archive."""
    if st.archive is None:
        return None
    try:
        async with st.archive.connection(timeout=5.0) as conn:
            return await fn(conn, *args, **kw)
    except (PoolTimeout, PgError) as exc:
        raise ArchiveDown(type(exc).__name__) from exc


async def job_tenant(st: ApiState, job_id: str) -> str | None:
    """The tenant of a job still in Redis, else of its last archived version."""
    job = await st.engine.query.get_job(job_id) if JOB_ID.match(job_id) else None
    if job is not None:
        return job.tenant
    versions = await _archive(st, history.versions, job_id)
    return versions[-1].tenant if versions else None


def _parse_cursor(raw: str | None, top: int) -> tuple[str, int, tuple[int, str] | None]:
    """(phase, next run number, last run shown as (slot, id))."""
    if not raw:
        return "r", top, None
    m = _CURSOR.match(raw)
    if m is None:
        raise ApiError(422, "Unprocessable Content", "cursor: pass back a next_cursor",
                       field="cursor")
    if m.group(1) is not None:
        return "r", int(m.group(1)), (int(m.group(2)), m.group(3)) if m.group(3) else None
    return "a", 0, (int(m.group(4)), m.group(5))


async def _redis_part(st: ApiState, job_id: str, top: int, limit: int) -> tuple[list[Run], bool]:
    """Runs top, top-1, ... still in Redis; and whether a gap (expired runs) was met."""
    want = min(limit, top)
    runs = await st.engine.query.job_runs(job_id, want, top=top) if want > 0 else []
    return runs, len(runs) < want


async def _page(st: ApiState, job_id: str, top: int, raw: str | None, limit: int) -> RunPage:
    phase, n, last = _parse_cursor(raw, top)
    items: list[Run] = []
    if phase == "r":
        items, gap = await _redis_part(st, job_id, n, limit)
        n -= limit
        if items:
            last = (items[-1].slot_ms, items[-1].id)
        if not gap and n > 0:
            return RunPage(items=items, next_cursor=f"r{n}|{_last(last)}")
        if st.archive is None:
            return RunPage(items=items, next_cursor=None)
    cursor = None if last is None else f"{last[0]}|{last[1]}"
    page = await _archive(st, history.job_runs, job_id, cursor=cursor,
                          limit=max(1, limit - len(items)))
    if len(items) >= limit:
        return RunPage(items=items, next_cursor=f"a{last[0]}|{last[1]}" if last else None)
    seen = {r.id for r in items}
    items += [r for r in page.runs if r.id not in seen]
    return RunPage(items=items, next_cursor=f"a{page.cursor}" if page.cursor else None)


def _last(last: tuple[int, str] | None) -> str:
    return "0|" if last is None else f"{last[0]}|{last[1]}"


@endpoint(Role.READ)
async def job_runs(request: Request, who: Principal) -> Response:
    """A job's runs, newest first: live ones from Redis, then older ones from the archive."""
    st, job_id = state(request), request.path_params["job_id"]
    limit = query_int(request, "limit", 20, 1, 200)
    job = await st.engine.query.get_job(job_id) if JOB_ID.match(job_id) else None
    tenant = job.tenant if job is not None else await job_tenant(st, job_id)
    if tenant != who.tenant:
        raise not_found(f"job {job_id!r}")
    top = job.runs if job is not None else 0
    return json(await _page(st, job_id, top, request.query_params.get("cursor"), limit))


async def owned_run(request: Request, who: Principal) -> Run:
    st, run_id = state(request), request.path_params["run_id"]
    run = await st.engine.query.get_run(run_id) if RUN_ID.match(run_id) else None
    if run is None and RUN_ID.match(run_id):
        run = await _archive(st, history.run, run_id)
    if run is None or run.tenant != who.tenant:
        raise not_found(f"run {run_id!r}")
    return run


@endpoint(Role.READ)
async def get_run(request: Request, who: Principal) -> Response:
    return json(await owned_run(request, who))


@endpoint(Role.WRITE)
async def cancel_run(request: Request, who: Principal) -> Response:
    run = await owned_run(request, who)
    st = state(request)
    if await st.engine.query.get_run(run.id) is None:
        raise ApiError(409, "Conflict", f"run {run.id!r} has finished")
    try:
        code = await st.engine.catalog.cancel_run(run.id, await st.clock.now_ms())
    except (InvalidTransition, JobNotFound) as exc:
        raise ApiError(409, "Conflict", f"run {run.id!r} has finished") from exc
    status = "cancelled" if code == Code.DONE else "cancelling"
    return json(RunCancelled(run_id=run.id, status=status),
                202 if code == Code.SIGNALLED else 200)


ROUTES = [
    Route(f"{BASE}/jobs/{{job_id}}/runs", job_runs, methods=["GET"]),
    Route(f"{BASE}/runs/{{run_id}}", get_run, methods=["GET"]),
    Route(f"{BASE}/runs/{{run_id}}/cancel", cancel_run, methods=["POST"]),
]
