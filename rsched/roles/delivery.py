"""Delivering one notification over HTTP: signing, POSTing, retrying with back-off.

Owns: the signature header (HMAC-SHA256 over "<t>.<body>", verify() for receivers),
the retry rule (no answer, 408, 429 honouring Retry-After up to notify.backoff_max_s,
5xx: retried; other answers: final) and resolving a webhook's signing key by name.
Must not: decide what to send or record it (notifier.py does), nor read Redis.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import httpx

from rsched.settings import NotifySettings

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Rsched-Signature"  # t=<epoch ms>,v1=<hex HMAC-SHA256>
RETRIED = frozenset({408, 429})  # and every 5xx


@dataclass(frozen=True, slots=True)
class Delivery:
    status: str  # delivered | failed
    attempts: int
    code: int  # the last HTTP status; 0 = no answer


def sign(key: bytes, t_ms: int, body: bytes) -> str:
    mac = hmac.new(key, str(t_ms).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={t_ms},v1={mac}"


def verify(key: bytes, header: str, body: bytes, *, now_ms: int,
           tolerance_ms: int = 300_000) -> bool:
    """What a receiver does: the header's MAC matches and its time is recent."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t_ms = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(key, t_ms, body).rpartition("v1=")[2]
    return abs(now_ms - t_ms) <= tolerance_ms and hmac.compare_digest(
        expected, parts.get("v1", ""))


def secret_key(name: str, environ: Mapping[str, str] | None = None) -> bytes | None:
    """A signing key by name, from the worker's environment (the value never leaves it)."""
    value = (os.environ if environ is None else environ).get(name)
    return None if value is None else value.encode()


class Poster:
    """POSTs JSON bodies on one shared client, retrying by the rule above."""

    def __init__(self, http: httpx.AsyncClient, cfg: NotifySettings,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.http = http
        self.cfg = cfg
        self._sleep = sleep

    async def post(self, url: str, body: bytes, headers: Mapping[str, str],
                   key: bytes | None = None) -> Delivery:
        code = 0
        for attempt in range(1, self.cfg.attempts + 1):
            h = {"Content-Type": "application/json", **headers}
            if key is not None:  # a fresh timestamp per attempt: receivers reject old ones
                h[SIGNATURE_HEADER] = sign(key, int(time.time() * 1000), body)
            wait = self._backoff(attempt)
            try:
                resp = await self.http.post(url, content=body, headers=h,
                                            timeout=self.cfg.timeout_s)
                code = resp.status_code
            except httpx.HTTPError as exc:
                code = 0
                log.info("notification to %s: attempt %d: %s", url, attempt,
                         type(exc).__name__)
            else:
                if 200 <= code < 300:
                    return Delivery("delivered", attempt, code)
                if code < 500 and code not in RETRIED:
                    return Delivery("failed", attempt, code)
                wait = max(wait, min(self.cfg.backoff_max_s, _retry_after(resp)))
            if attempt < self.cfg.attempts:
                await self._sleep(wait)
        return Delivery("failed", self.cfg.attempts, code)

    def _backoff(self, attempt: int) -> float:
        return min(self.cfg.backoff_max_s, self.cfg.backoff_s * 2.0 ** (attempt - 1))


def _retry_after(resp: httpx.Response) -> float:
    try:
        seconds = float(str(resp.headers.get("Retry-After", "0")))
    except ValueError:  # an HTTP date: the back-off applies
        return 0.0
    return max(0.0, seconds)
