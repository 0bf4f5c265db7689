"""The OpenAPI 3.1 document of /api/v1, built from the msgspec Structs, and the docs page.

Owns: the operation table (path, method, role, body, responses, parameters) and the
document built from it once per process. Must not: describe behaviour the routes do
not have: every route in api/routes/ appears here once (a test checks both ways).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from api import schemas as s
from api.routes.jobs import BASE
from rsched.models import JobState, Run

Op = tuple[str, str, str, str, Any, dict[int, Any], list[str]]
# (method, path, operationId, summary, request body type, {status: body type}, params)
ERRORS = (400, 401, 403, 404, 409, 412, 413, 422, 429, 503)
OPS: list[Op] = [
    ("post", "/jobs", "createJob", "Create a job", s.JobIn, {201: s.JobOut}, ["idem"]),
    ("get", "/jobs", "listJobs", "List the tenant's jobs", None, {200: s.JobPage},
     ["limit", "cursor", "status", "queue", "task", "name_prefix", "label"]),
    ("post", "/jobs:batch", "createJobs", "Create up to 1000 jobs", s.JobBatchIn,
     {201: s.JobBatchOut}, ["idem"]),
    ("get", "/jobs/{job_id}", "getJob", "Get a job (ETag = version)", None, {200: s.JobOut},
     ["job_id"]),
    ("put", "/jobs/{job_id}", "replaceJob", "Replace a job's definition", s.JobIn,
     {200: s.JobOut}, ["job_id", "if_match"]),
    ("patch", "/jobs/{job_id}", "patchJob", "Change some fields of a job", s.JobPatch,
     {200: s.JobOut}, ["job_id", "if_match"]),
    ("delete", "/jobs/{job_id}", "cancelJob", "Cancel a job (and its waiting or running run)",
     None, {204: None}, ["job_id"]),
    ("post", "/jobs/{job_id}/pause", "pauseJob", "Pause a job", None, {200: s.JobOut},
     ["job_id"]),
    ("post", "/jobs/{job_id}/resume", "resumeJob", "Resume a paused job", None,
     {200: s.JobOut}, ["job_id"]),
    ("post", "/jobs/{job_id}/run", "runJob", "Run a job now (one extra run)", None,
     {202: s.RunAccepted}, ["job_id"]),
    ("get", "/jobs/{job_id}/runs", "listJobRuns", "A job's runs, newest first", None,
     {200: s.RunPage}, ["job_id", "limit_runs", "cursor"]),
    ("get", "/jobs/{job_id}/preview", "previewJob", "The job's next fire instants", None,
     {200: s.Preview}, ["job_id", "count"]),
    ("get", "/runs/{run_id}", "getRun", "Get a run", None, {200: Run}, ["run_id"]),
    ("post", "/runs/{run_id}/cancel", "cancelRun", "Cancel one run", None,
     {200: s.RunCancelled, 202: s.RunCancelled}, ["run_id"]),
    ("get", "/queues", "listQueues", "The tenant's queues and their figures", None,
     {200: s.QueueList}, []),
    ("get", "/dead-letters", "listDeadLetters", "Dead-lettered runs, newest first", None,
     {200: s.DeadPage}, ["limit", "cursor"]),
    ("delete", "/dead-letters", "purgeDeadLetters", "Delete the tenant's dead letters (admin)",
     None, {200: s.Purged}, []),
    ("post", "/dead-letters:retry", "retryDeadLetters", "Retry every dead letter (admin)",
     None, {202: s.Retried}, []),
    ("delete", "/dead-letters/{dead_id}", "deleteDeadLetter", "Delete one dead letter", None,
     {204: None}, ["dead_id"]),
    ("post", "/dead-letters/{dead_id}/retry", "retryDeadLetter",
     "Retry one dead letter as a new run", None, {202: s.Retried}, ["dead_id"]),
    ("get", "/status", "getStatus", "The deployment at a glance", None, {200: s.StatusOut},
     []),
]
UNAUTHENTICATED: list[Op] = [
    ("get", "/healthz", "healthz", "The process is up", None, {200: s.Health}, []),
    ("get", "/readyz", "readyz", "Redis (and PostgreSQL) reachable", None,
     {200: s.Health, 503: s.Health}, []),
]


def _param(name: str) -> dict[str, Any]:
    q: dict[str, Any] = {"in": "query", "required": False}
    table: dict[str, dict[str, Any]] = {
        "job_id": {"in": "path", "required": True, "schema": {"type": "string"}},
        "run_id": {"in": "path", "required": True, "schema": {"type": "string"}},
        "dead_id": {"in": "path", "required": True, "schema": {"type": "string"}},
        "limit": {**q, "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
        "limit_runs": {**q, "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
        "count": {**q, "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
        "cursor": {**q, "schema": {"type": "string"}},
        "status": {**q, "schema": {"enum": [v.value for v in JobState]}},
        "queue": {**q, "schema": {"type": "string"}},
        "task": {**q, "schema": {"type": "string"}},
        "name_prefix": {**q, "schema": {"type": "string"}},
        "label": {**q, "schema": {"type": "array", "items": {"type": "string",
                                                            "pattern": "^[^=]+=.*$"}},
                  "style": "form", "explode": True, "description": "key=value, repeatable"},
        "if_match": {"in": "header", "required": False, "schema": {"type": "string"},
                     "description": "the job's ETag; 412 when it moved on"},
        "idem": {"in": "header", "required": False, "schema": {"type": "string"},
                 "description": "a repeat returns the first response"},
    }
    real = {"limit_runs": "limit", "if_match": "If-Match", "idem": "Idempotency-Key"}
    return {"name": real.get(name, name), **table[name]}


def _types() -> list[Any]:
    found: list[Any] = [s.Problem]
    for op in OPS + UNAUTHENTICATED:
        found += [t for t in (op[4], *op[5].values()) if t is not None]
    return list(dict.fromkeys(found))


def _content(ref: dict[str, Any], media: str = "application/json") -> dict[str, Any]:
    return {"content": {media: {"schema": ref}}}


def _operation(op: Op, refs: dict[Any, Any], secured: bool) -> dict[str, Any]:
    _, _, op_id, summary, req, responses, params = op
    out: dict[str, Any] = {"operationId": op_id, "summary": summary,
                           "parameters": [_param(p) for p in params], "responses": {}}
    if req is not None:
        out["requestBody"] = {"required": True, **_content(refs[req])}
    for status, typ in responses.items():
        out["responses"][str(status)] = {"description": str(status),
                                         **(_content(refs[typ]) if typ else {})}
    if secured:
        for status in ERRORS:
            out["responses"].setdefault(str(status), {
                "description": "problem details", **_content(refs[s.Problem],
                                                              "application/problem+json")})
    else:
        out["security"] = []
    return out


@cache
def document() -> bytes:
    types = _types()
    schemas, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}")
    refs = dict(zip(types, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in OPS:
        paths.setdefault(BASE + op[1], {})[op[0]] = _operation(op, refs, True)
    for op in UNAUTHENTICATED:
        paths.setdefault(op[1], {})[op[0]] = _operation(op, refs, False)
    return msgspec.json.encode({
        "openapi": "3.1.0",
        "info": {"title": "rsched", "version": "1",
                 "description": "Redis-native distributed job scheduler. Times are epoch ms."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "apiKey": {"type": "http", "scheme": "bearer"}}},
        "security": [{"apiKey": []}],
    })


async def openapi_json(request: Request) -> Response:
    return Response(document(), media_type="application/json")


async def docs_page(request: Request) -> Response:
    return HTMLResponse(resources.files("api").joinpath("static/docs.html").read_text())


ROUTES = [
    Route(f"{BASE}/openapi.json", openapi_json, methods=["GET"]),
    Route(f"{BASE}/docs", docs_page, methods=["GET"]),
]
