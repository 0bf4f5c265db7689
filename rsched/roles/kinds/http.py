"""HTTP tasks: one request per run over the worker's shared httpx client.

Owns: building the request (secrets resolved), the status -> outcome rule, Retry-After,
and the run's result (status, duration, a capped body excerpt). Must not: record
outcomes (the worker does, from what this returns or raises) or log secret values.

Outcome rule (docs/tasks.md): a success code (any 2xx unless ``success_codes`` says
otherwise) succeeds; connection errors, 408, 429 and 5xx retry by the job's policy (429
and 503 after their Retry-After); a timeout is ``timed_out``; any other status fails
without retry unless ``retry_4xx``.
"""

from __future__ import annotations

import email.utils
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from rsched.errors import Fatal, Retry
from rsched.models import JobSpec
from rsched.roles.kinds.secrets import RunSecrets
from rsched.task_kinds import HttpTask

BODY_EXCERPT = 4096  # characters of the response body kept on the run
RETRY_AFTER_MAX_S = 86400.0
_RETRY_STATUS = frozenset({408, 429})


class HttpRunner:
    def __init__(self, max_connections: int) -> None:
        self._limits = httpx.Limits(max_connections=max_connections,
                                    max_keepalive_connections=max_connections)
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:  # made on first use: most workers never send a request
            self._client = httpx.AsyncClient(limits=self._limits, trust_env=False)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def run(self, spec: JobSpec, task: HttpTask, secrets: RunSecrets) -> dict[str, Any]:
        url = httpx.URL(task.url)  # params= would drop the URL's own query string
        if task.query:
            url = url.copy_merge_params(task.query)
        request = self._http().build_request(
            task.method, url,
            headers={k: secrets.value(v) for k, v in task.headers.items()},
            content=None if task.body is None else secrets.value(task.body).encode(),
            json=secrets.json(task.json) if task.json is not None else None,
            timeout=spec.timeout_s)
        started = time.monotonic()
        try:
            response = await self._http().send(request, stream=True,
                                               follow_redirects=task.follow_redirects)
            try:
                raw = await _head(response, BODY_EXCERPT + secrets.longest)
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise TimeoutError from None
        except httpx.TransportError as exc:
            raise Retry(reason=secrets.scrub(f"HTTP request failed: {type(exc).__name__}: "
                                             f"{exc}")) from None
        excerpt = secrets.scrub(raw.decode(response.encoding or "utf-8", errors="replace"))
        result = {"status": response.status_code,
                  "duration_ms": round((time.monotonic() - started) * 1000),
                  "body": excerpt[:BODY_EXCERPT]}
        _judge(task, response, result)
        return result


async def _head(response: httpx.Response, limit: int) -> bytes:
    """The first ``limit`` bytes of the body (the rest is never read)."""
    buf = bytearray()
    async for chunk in response.aiter_bytes():
        buf += chunk
        if len(buf) >= limit:
            break
    return bytes(buf[:limit])


def _judge(task: HttpTask, response: httpx.Response, result: dict[str, Any]) -> None:
    status = response.status_code
    ok = status in task.success_codes if task.success_codes else 200 <= status < 300
    if ok:
        return
    message = f"HTTP {status} {response.reason_phrase}: {result['body'][:500]}".rstrip(": ")
    if status in _RETRY_STATUS or status >= 500:
        delay = retry_after(response.headers.get("retry-after")) \
            if status in (429, 503) else None
        raise Retry(delay, reason=message)
    if 400 <= status < 500 and task.retry_4xx:
        raise Retry(reason=message)
    raise Fatal(message)


def retry_after(value: str | None) -> float | None:
    """Seconds a Retry-After header asks for (delta seconds or an HTTP date), capped at a
    day; None when absent or unreadable (the job's backoff applies)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_MAX_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - datetime.now(UTC)).total_seconds()), RETRY_AFTER_MAX_S)
