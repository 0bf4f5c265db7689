"""Queues, dead letters, status and health endpoints.

Owns: the tenant's view of queues and dead letters (a dead letter belongs to its run's
tenant), the deployment status filtered to the tenant, /healthz and /readyz.
Must not: reach Redis or PostgreSQL except through the Client, the engine's parts and
the archive pool.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.http import ApiState, Principal, endpoint, json, query_int, state
from api.problems import ApiError, not_found
from api.routes.jobs import BASE
from api.schemas import DeadPage, Health, Purged, QueueList, QueueOut, Retried, StatusOut, dead_out
from rsched.models import DeadLetter, Role
from rsched.names import JOB_ID

_DEAD_ID = re.compile(r"^(\d{1,16}-\d{1,16})~(.+)$")
SCAN_MAX = 5000  # dead letters one request examines at most
BULK_MAX = 1000  # dead letters one retry-all or purge call handles at most


@endpoint(Role.READ)
async def list_queues(request: Request, who: Principal) -> Response:
    st = state(request)
    queues = await st.engine.catalog.tenant_queues(who.tenant)
    figures = await st.engine.catalog.queue_figures(queues, await st.clock.now_ms())
    return json(QueueList(items=[QueueOut(name=f.name, depth=f.depth, pending=f.pending,
                                          oldest_age_ms=f.oldest_age_ms, per_min=f.per_min)
                                 for f in figures]))


async def _tenant_dead(st: ApiState, tenant: str, before: str, limit: int
                       ) -> tuple[list[DeadLetter], str | None]:
    """The tenant's dead letters older than entry ``before``, newest first."""
    out: list[DeadLetter] = []
    scanned, cursor = 0, before
    while scanned < SCAN_MAX and len(out) < limit:
        page, nxt = await st.engine.catalog.dead_page(cursor, max(limit * 2, 100))
        tenants = await st.engine.catalog.run_tenants([d.run_id for d in page])
        for d, t in zip(page, tenants, strict=True):
            scanned, cursor = scanned + 1, d.entry_id
            if t == tenant:
                out.append(d)
                if len(out) == limit:
                    return out, d.entry_id
        if nxt is None:
            return out, None
    return out, cursor


@endpoint(Role.READ)
async def list_dead(request: Request, who: Principal) -> Response:
    limit = query_int(request, "limit", 50, 1, 500)
    before = request.query_params.get("cursor", "")
    if before and not re.match(r"^\d{1,16}-\d{1,16}$", before):
        raise ApiError(422, "Unprocessable Content", "cursor: pass back a next_cursor",
                       field="cursor")
    items, cursor = await _tenant_dead(state(request), who.tenant, before, limit)
    return json(DeadPage(items=[dead_out(d) for d in items], next_cursor=cursor))


async def _owned_dead(request: Request, who: Principal) -> DeadLetter:
    st, raw = state(request), request.path_params["dead_id"]
    m = _DEAD_ID.match(raw)
    dead = await st.engine.catalog.get_dead(m.group(2), m.group(1)) \
        if m and JOB_ID.match(m.group(2)) else None
    if dead is None or (await st.engine.catalog.run_tenants([dead.run_id]))[0] != who.tenant:
        raise not_found(f"dead letter {raw!r}")
    return dead


async def _retry(st: ApiState, letters: list[DeadLetter]) -> Retried:
    """Each dead letter becomes a fresh run of its job (attempts from 1), then leaves."""
    run_ids, skipped = await st.client.retry_dead(letters)
    return Retried(retried=len(letters) - skipped, run_ids=run_ids, skipped=skipped)


@endpoint(Role.WRITE)
async def retry_dead(request: Request, who: Principal) -> Response:
    result = await _retry(state(request), [await _owned_dead(request, who)])
    if not result.retried:
        raise ApiError(409, "Conflict", "the job no longer accepts runs (cancelled or gone)")
    return json(result, 202)


@endpoint(Role.WRITE)
async def delete_dead(request: Request, who: Principal) -> Response:
    await state(request).client.purge_dead([await _owned_dead(request, who)])
    return Response(status_code=204)


@endpoint(Role.ADMIN)
async def retry_all_dead(request: Request, who: Principal) -> Response:
    st = state(request)
    letters, _ = await _tenant_dead(st, who.tenant, "", BULK_MAX)
    return json(await _retry(st, letters), 202)


@endpoint(Role.ADMIN)
async def purge_dead(request: Request, who: Principal) -> Response:
    st = state(request)
    letters, _ = await _tenant_dead(st, who.tenant, "", BULK_MAX)
    return json(Purged(purged=await st.client.purge_dead(letters)))


@endpoint(Role.READ)
async def status(request: Request, who: Principal) -> Response:
    st = state(request)
    s = await st.client.status()
    mine = set(await st.engine.catalog.tenant_queues(who.tenant))
    live_ms = 3 * st.settings.worker.heartbeat_s * 1000
    return json(StatusOut(
        now_ms=s.now_ms, tenant=who.tenant, jobs_due=s.due,
        queues={q: n for q, n in s.queues.items() if q in mine},
        archive_lag_ms=s.archive_lag_ms,
        workers=sum(1 for ms in s.workers.values() if ms <= live_ms),
        schedulers=sum(1 for ms in s.schedulers.values() if ms <= 3 * 1000 *
                       st.settings.scheduler.lease_s)))


async def healthz(request: Request) -> Response:
    return json(Health(status="ok"))


async def readyz(request: Request) -> Response:
    """Ready when Redis answers and, if an archive is configured, PostgreSQL does."""
    st = state(request)
    checks: dict[str, str] = {}
    try:
        await st.engine.clock().now_ms()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["redis"] = type(exc).__name__
    if st.archive is not None:
        try:
            async with st.archive.connection(timeout=2.0) as conn:
                await conn.execute("SELECT 1")
            checks["postgresql"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["postgresql"] = type(exc).__name__
    ok = all(v == "ok" for v in checks.values())
    return json(Health(status="ok" if ok else "unavailable", checks=checks), 200 if ok else 503)


ROUTES = [
    Route(f"{BASE}/queues", list_queues, methods=["GET"]),
    Route(f"{BASE}/dead-letters", list_dead, methods=["GET"]),
    Route(f"{BASE}/dead-letters", purge_dead, methods=["DELETE"]),
    Route(f"{BASE}/dead-letters:retry", retry_all_dead, methods=["POST"]),
    Route(f"{BASE}/dead-letters/{{dead_id}}", delete_dead, methods=["DELETE"]),
    Route(f"{BASE}/dead-letters/{{dead_id}}/retry", retry_dead, methods=["POST"]),
    Route(f"{BASE}/status", status, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]
