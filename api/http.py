"""The request pipeline every endpoint shares: auth, rate limit, role, idempotency, errors.

Owns: ApiState (what the lifespan puts on ``app.state.api``), the ``endpoint`` decorator,
the key cache, JSON responses, body decoding and query-parameter parsing.
Must not: hold Redis or PostgreSQL itself (the engine and the archive pool do) or know
any route's semantics.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import Response

from api.problems import ApiError, problem
from rsched.client import Client
from rsched.clock import Clock
from rsched.engine import Engine
from rsched.models import ApiKey, Role
from rsched.settings import Settings

T = TypeVar("T")
_enc = msgspec.json.Encoder()
_stored = msgspec.msgpack.Encoder()
_INFLIGHT = b"inflight:"
MAX_IDEM_KEY = 255


@dataclass(frozen=True)
class Principal:
    tenant: str
    role: Role
    key_id: str  # "dev" in dev mode


DEV = Principal("default", Role.ADMIN, "dev")


class StoredResponse(msgspec.Struct, array_like=True):
    fingerprint: str
    status: int
    media_type: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ApiState:
    settings: Settings
    engine: Engine
    client: Client
    clock: Clock
    archive: AsyncConnectionPool[Any] | None = None
    _keys: dict[str, tuple[float, ApiKey | None]] = field(default_factory=dict)
    metrics_cache: tuple[float, bytes] | None = None  # (monotonic expiry, /metrics text)
    metrics_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def key_for(self, token: str) -> ApiKey | None:
        """The live key of a token, cached for api.key_cache_s (the bound on how long a
        revoked key keeps working)."""
        now = time.monotonic()
        hit = self._keys.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        key = await self.engine.access.authenticate(token)
        if len(self._keys) > 10_000:
            self._keys.clear()
        if key is not None:
            self._keys[token] = (now + self.settings.api.key_cache_s, key)
        return key


def state(request: Request) -> ApiState:
    st: ApiState = request.app.state.api
    return st


def json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_enc.encode(obj), status_code=status, headers=headers,
                    media_type="application/json")


async def body(request: Request, typ: type[T]) -> T:
    return msgspec.json.decode(await request.body(), type=typ)


def query_int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.lstrip("-").isdigit() or not lo <= int(raw) <= hi:
        raise ApiError(422, "Unprocessable Content", f"{name}: an integer within {lo}..{hi}",
                       field=name)
    return int(raw)


def _token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key") or None


async def authorize(request: Request, needed: Role) -> Principal:
    st = state(request)
    cfg = st.settings.api
    if cfg.dev_mode:
        return DEV
    token = _token(request)
    key = await st.key_for(token) if token else None
    if key is None:
        raise ApiError(401, "Unauthorized", "a valid API key is required (Authorization: "
                       "Bearer <key>)", headers={"WWW-Authenticate": "Bearer"})
    wait_ms = await st.engine.access.take_token(key.id, await st.clock.now_ms(),
                                                cfg.rate_per_s, cfg.burst)
    if wait_ms:
        raise ApiError(429, "Too Many Requests", f"rate limit of key {key.id} reached",
                       headers={"Retry-After": str(max(1, math.ceil(wait_ms / 1000)))})
    if not key.role.allows(needed):
        raise ApiError(403, "Forbidden", f"role {key.role.value} cannot do this; needs "
                       f"{needed.value}")
    return Principal(key.tenant, key.role, key.id)


Handler = Callable[[Request, Principal], Awaitable[Response]]


def endpoint(role: Role, *, idempotent: bool = False
             ) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """Wrap a handler with auth, rate limit, role check, Idempotency-Key replay and
    problem+json errors."""

    def wrap(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            try:
                who = await authorize(request, role)
                idem = request.headers.get("idempotency-key") if idempotent else None
                if idem is not None:
                    return await _idempotent(request, who, idem, fn)
                return await fn(request, who)
            except Exception as exc:  # noqa: BLE001 - every error becomes problem+json
                return problem(exc, request.url.path)

        handle.__name__ = fn.__name__
        handle.__doc__ = fn.__doc__
        return handle

    return wrap


async def _idempotent(request: Request, who: Principal, idem: str, fn: Handler) -> Response:
    if not 1 <= len(idem) <= MAX_IDEM_KEY or not idem.isprintable():
        raise ApiError(422, "Unprocessable Content", "Idempotency-Key: 1-255 printable"
                       " characters", field="Idempotency-Key")
    st = state(request)
    ttl = st.settings.api.idempotency_ttl_s
    raw = await request.body()
    fp = hashlib.sha256(request.method.encode() + request.url.path.encode() + b"\0" + raw
                        ).hexdigest()
    seen = await st.engine.access.begin_idempotent(who.tenant, who.key_id, idem,
                                                   _INFLIGHT + fp.encode(), ttl)
    if seen is not None:
        return _replay(seen, fp)
    try:
        response = await fn(request, who)
    except Exception as exc:  # noqa: BLE001 - a 4xx is a response too, and is replayed
        response = problem(exc, request.url.path)
    keep = None
    if response.status_code < 500:
        headers = {k: v for k, v in response.headers.items()
                   if k in ("location", "etag", "retry-after")}
        keep = _stored.encode(StoredResponse(fp, response.status_code,
                                             response.media_type or "application/json",
                                             headers, bytes(response.body)))
    await st.engine.access.finish_idempotent(who.tenant, who.key_id, idem, keep, ttl)
    return response


def _replay(seen: bytes, fp: str) -> Response:
    if seen.startswith(_INFLIGHT) or not seen:
        raise ApiError(409, "Conflict", "a request with this Idempotency-Key is in progress",
                       field="Idempotency-Key")
    stored = msgspec.msgpack.decode(seen, type=StoredResponse)
    if stored.fingerprint != fp:
        raise ApiError(422, "Unprocessable Content", "this Idempotency-Key was used for a"
                       " different request", field="Idempotency-Key")
    return Response(stored.body, status_code=stored.status, media_type=stored.media_type,
                    headers={**stored.headers, "Idempotent-Replayed": "true"})
