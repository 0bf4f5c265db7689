"""Job endpoints: create (one or a batch), list, get, change, cancel, pause, resume, run now,
preview.

Owns: the HTTP semantics of /api/v1/jobs (status codes, ETag/If-Match, Location) and
tenant ownership checks (another tenant's job is 404). Must not: reach Redis except
through the Client and the engine's parts.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.http import Principal, body, endpoint, json, query_int, state
from api.problems import ApiError, not_found
from api.schemas import (
    JobBatchIn,
    JobBatchOut,
    JobIn,
    JobPage,
    JobPatch,
    Preview,
    RunAccepted,
    job_out,
    patched,
)
from rsched.engine.catalog import member_job
from rsched.errors import InvalidTransition
from rsched.models import Cron, Job, JobState, Role
from rsched.names import JOB_ID

BASE = "/api/v1"
SCAN_MAX = 2000  # index entries one listing request examines at most
FORGET_AFTER_MS = 60_000  # an index entry without a job is dropped once this old


async def owned_job(request: Request, who: Principal) -> Job:
    job_id = request.path_params["job_id"]
    job = await state(request).client.engine.query.get_job(job_id) \
        if JOB_ID.match(job_id) else None
    if job is None or job.tenant != who.tenant:
        raise not_found(f"job {job_id!r}")
    return job


def etag(job: Job) -> dict[str, str]:
    return {"ETag": f'"{job.version}"'}


def if_match(request: Request) -> int | None:
    raw = request.headers.get("if-match")
    if raw is None or raw.strip() == "*":
        return None
    tag = raw.strip().removeprefix("W/").strip('"')
    if not tag.isdigit():
        raise ApiError(412, "Precondition Failed", "If-Match: the job's ETag, a version",
                       field="If-Match")
    return int(tag)


@endpoint(Role.WRITE, idempotent=True)
async def create_job(request: Request, who: Principal) -> Response:
    job_in = await body(request, JobIn)
    job = await state(request).client.create(job_in.to_def(who.tenant))
    return json(job_out(job), 201, {"Location": f"{BASE}/jobs/{job.id}", **etag(job)})


@endpoint(Role.WRITE, idempotent=True)
async def create_batch(request: Request, who: Principal) -> Response:
    batch = await body(request, JobBatchIn)
    ids = await state(request).client.schedule_many([j.to_def(who.tenant) for j in batch.jobs])
    return json(JobBatchOut(ids=ids), 201)


class Filters(msgspec.Struct, frozen=True):
    status: JobState | None
    queue: str | None
    task: str | None
    name_prefix: str | None
    labels: dict[str, str]

    def match(self, job: Job) -> bool:
        return ((self.status is None or job.state is self.status)
                and (self.queue is None or job.queue == self.queue)
                and (self.task is None or job.spec.task == self.task)
                and (self.name_prefix is None or (job.name or "").startswith(self.name_prefix))
                and all(job.labels.get(k) == v for k, v in self.labels.items()))


def _filters(request: Request) -> Filters:
    q = request.query_params
    labels: dict[str, str] = {}
    for item in q.getlist("label"):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ApiError(422, "Unprocessable Content", "label: key=value", field="label")
        labels[key] = value
    status = q.get("status")
    if status is not None and status not in JobState.__members__.values():
        raise ApiError(422, "Unprocessable Content",
                       f"status: one of {', '.join(s.value for s in JobState)}", field="status")
    return Filters(JobState(status) if status else None, q.get("queue"), q.get("task"),
                   q.get("name_prefix"), labels)


def _cursor(raw: str | None) -> str:
    if not raw:
        return ""
    try:
        member = base64.urlsafe_b64decode(raw.encode() + b"==").decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        member = ""
    head, _, job_id = member.partition(":")
    if not (head.isdigit() and len(head) == 13 and JOB_ID.match(job_id)):
        raise ApiError(422, "Unprocessable Content", "cursor: pass back a next_cursor",
                       field="cursor")
    return member


def _encode_cursor(member: str) -> str:
    return base64.urlsafe_b64encode(member.encode()).decode().rstrip("=")


@endpoint(Role.READ)
async def list_jobs(request: Request, who: Principal) -> Response:
    """The tenant's jobs in creation order, filtered; a page may be short (or empty) with a
    next_cursor when filters skip many jobs: follow next_cursor until it is null."""
    limit = query_int(request, "limit", 50, 1, 500)
    filters, after = _filters(request), _cursor(request.query_params.get("cursor"))
    engine = state(request).engine
    now = await state(request).clock.now_ms()
    items: list[Job] = []
    scanned, last = 0, after
    while scanned < SCAN_MAX and len(items) < limit:
        members = await engine.catalog.scan_jobs(who.tenant, last, min(limit * 2, 500))
        if not members:
            return json(JobPage(items=[job_out(j) for j in items], next_cursor=None))
        jobs = await engine.query.get_jobs([member_job(m) for m in members])
        gone = []
        for member, job in zip(members, jobs, strict=True):
            scanned, last = scanned + 1, member
            if job is None:
                gone += [member] if int(member[:13]) < now - FORGET_AFTER_MS else []
            elif job.tenant == who.tenant and filters.match(job):
                items.append(job)
                if len(items) == limit:
                    break
        await engine.catalog.forget(who.tenant, gone)
    return json(JobPage(items=[job_out(j) for j in items], next_cursor=_encode_cursor(last)))


@endpoint(Role.READ)
async def get_job(request: Request, who: Principal) -> Response:
    job = await owned_job(request, who)
    return json(job_out(job), headers=etag(job))


async def _update(request: Request, job: Job, new: JobIn, who: Principal) -> Response:
    expected = if_match(request)
    if expected is not None and expected != job.version:
        raise ApiError(412, "Precondition Failed", f"job is at version {job.version}",
                       field="If-Match")
    client = state(request).client
    try:
        await client.update(job.id, new.to_def(who.tenant), expected or job.version)
    except InvalidTransition as exc:
        if job.state is JobState.CANCELLED:
            raise ApiError(409, "Conflict", "a cancelled job cannot change") from exc
        raise ApiError(412, "Precondition Failed", "the job changed meanwhile",
                       field="If-Match") from exc
    updated = await client.get(job.id)
    return json(job_out(updated), headers=etag(updated))


@endpoint(Role.WRITE)
async def put_job(request: Request, who: Principal) -> Response:
    job = await owned_job(request, who)
    return await _update(request, job, await body(request, JobIn), who)


@endpoint(Role.WRITE)
async def patch_job(request: Request, who: Principal) -> Response:
    job = await owned_job(request, who)
    patch = msgspec.to_builtins(await body(request, JobPatch))
    merged = patched(job, patch)
    return await _update(request, job, msgspec.convert(merged, JobIn), who)


@endpoint(Role.WRITE)
async def delete_job(request: Request, who: Principal) -> Response:
    """Cancel: the job's slot goes, a waiting run is cancelled, a running one signalled."""
    job = await owned_job(request, who)
    if job.state is not JobState.CANCELLED:
        await state(request).client.cancel(job.id)
    return Response(status_code=204)


def _verb(name: str) -> Any:
    @endpoint(Role.WRITE)
    async def verb(request: Request, who: Principal) -> Response:
        job = await owned_job(request, who)
        client = state(request).client
        try:
            await getattr(client, name)(job.id)
        except InvalidTransition as exc:
            raise ApiError(409, "Conflict", f"cannot {name} a job in state "
                           f"{job.state.value}") from exc
        return json(job_out(await client.get(job.id)))

    verb.__name__ = f"{name}_job"
    return verb


@endpoint(Role.WRITE)
async def run_job(request: Request, who: Principal) -> Response:
    job = await owned_job(request, who)
    try:
        run_id = await state(request).client.run_now(job.id)
    except InvalidTransition as exc:
        raise ApiError(409, "Conflict", "a cancelled job cannot run") from exc
    return json(RunAccepted(run_id=run_id, job_id=job.id), 202,
                {"Location": f"{BASE}/runs/{run_id}"})


@endpoint(Role.READ)
async def preview_job(request: Request, who: Principal) -> Response:
    job = await owned_job(request, who)
    count = query_int(request, "count", 5, 1, 100)
    sched = job.trigger.schedule
    tz = sched.tz if isinstance(sched, Cron) else "UTC"
    times = await state(request).client.preview(sched, count)
    zone = ZoneInfo(tz)
    return json(Preview(job_id=job.id, tz=tz, times_ms=times, times=[
        datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone).isoformat() for ms in times]))


ROUTES = [
    Route(f"{BASE}/jobs", create_job, methods=["POST"]),
    Route(f"{BASE}/jobs", list_jobs, methods=["GET"]),
    Route(f"{BASE}/jobs:batch", create_batch, methods=["POST"]),
    Route(f"{BASE}/jobs/{{job_id}}", get_job, methods=["GET"]),
    Route(f"{BASE}/jobs/{{job_id}}", put_job, methods=["PUT"]),
    Route(f"{BASE}/jobs/{{job_id}}", patch_job, methods=["PATCH"]),
    Route(f"{BASE}/jobs/{{job_id}}", delete_job, methods=["DELETE"]),
    Route(f"{BASE}/jobs/{{job_id}}/pause", _verb("pause"), methods=["POST"]),
    Route(f"{BASE}/jobs/{{job_id}}/resume", _verb("resume"), methods=["POST"]),
    Route(f"{BASE}/jobs/{{job_id}}/run", run_job, methods=["POST"]),
    Route(f"{BASE}/jobs/{{job_id}}/preview", preview_job, methods=["GET"]),
]
