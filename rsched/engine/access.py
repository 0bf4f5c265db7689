"""Access control of the REST API in Redis: API keys, rate limits, idempotent replays.

Owns: the API key records (sha256 of the secret only), the per-key token bucket
(take_token.lua) and stored first responses for Idempotency-Key replays.
Must not: decide HTTP semantics (api/ does) or see a key's secret after creating it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

import msgspec

from rsched.engine.core import Core, Part
from rsched.engine.keys import AccessKeys
from rsched.errors import ValidationError
from rsched.models import ApiKey, Role
from rsched.names import validate_tenant

KEY_PREFIX = "rsk"  # a key reads rsk_<id>_<secret>; the id is public, the secret is not
_key_enc = msgspec.json.Encoder()
_key_dec = msgspec.json.Decoder(ApiKey)


def _sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(token: str) -> tuple[str, str] | None:
    """(key id, whole token) of a well-formed key, else None."""
    parts = token.split("_")
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1].isalnum():
        return None
    return parts[1], token


class Access(Part):
    def __init__(self, core: Core) -> None:
        super().__init__(core)
        self.keys = AccessKeys(core.cfg.prefix)

    async def create_key(self, tenant: str, role: Role, now_ms: int,
                         name: str = "") -> tuple[ApiKey, str]:
        """A new key; returns its record and the full token, which is never stored."""
        validate_tenant(tenant)
        if len(name) > 200:
            raise ValidationError("key name: at most 200 characters")
        key_id = secrets.token_hex(6)
        token = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32).replace('_', '')}"
        key = ApiKey(id=key_id, tenant=tenant, role=role, sha256=_sha(token),
                     created_ms=now_ms, name=name)
        await self.redis.hset(self.keys.api_keys, key_id, _key_enc.encode(key))
        return key, token

    async def list_keys(self) -> list[ApiKey]:
        raw = await self.redis.hgetall(self.keys.api_keys)
        return sorted((_key_dec.decode(v) for v in raw.values()), key=lambda k: k.created_ms)

    async def revoke_key(self, key_id: str, now_ms: int) -> bool:
        raw = await self.redis.hget(self.keys.api_keys, key_id)
        if raw is None:
            return False
        key = msgspec.structs.replace(_key_dec.decode(raw), revoked_ms=now_ms)
        await self.redis.hset(self.keys.api_keys, key_id, _key_enc.encode(key))
        return True

    async def authenticate(self, token: str) -> ApiKey | None:
        """The live key this token is, or None (unknown, revoked or wrong secret)."""
        parsed = split_key(token)
        if parsed is None:
            return None
        raw = await self.redis.hget(self.keys.api_keys, parsed[0])
        if raw is None:
            return None
        key = _key_dec.decode(raw)
        if key.revoked_ms is not None or not hmac.compare_digest(key.sha256, _sha(token)):
            return None
        return key

    async def take_token(self, key_id: str, now_ms: int, rate_per_s: float,
                         burst: int) -> int:
        """0 when the request may go ahead, else ms until the bucket has a token."""
        ttl_ms = int(burst / rate_per_s * 1000) + 1000
        return int(await self.core.call(
            "take_token", {"bucket": self.keys.bucket(key_id)},
            {"now_ms": now_ms, "rate_milli": max(1, int(rate_per_s * 1000)), "burst": burst,
             "ttl_ms": ttl_ms}))

    async def begin_idempotent(self, tenant: str, key_id: str, idem_key: str,
                               marker: bytes, ttl_s: float) -> bytes | None:
        """Reserve an Idempotency-Key; returns None when this call owns it, else what is
        stored: the first response, or ``marker``-prefixed bytes while it is in flight."""
        k = self.core.tenant_keys(tenant).idempotency(key_id, idem_key)
        if await self.redis.set(k, marker, nx=True, px=int(ttl_s * 1000)):
            return None
        stored: Any = await self.redis.get(k)
        return b"" if stored is None else bytes(stored)

    async def finish_idempotent(self, tenant: str, key_id: str, idem_key: str,
                                response: bytes | None, ttl_s: float) -> None:
        """Store the first response (None forgets the key, so a retry runs again)."""
        k = self.core.tenant_keys(tenant).idempotency(key_id, idem_key)
        if response is None:
            await self.redis.delete(k)
        else:
            await self.redis.set(k, response, px=int(ttl_s * 1000))

