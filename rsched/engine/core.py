"""The engine's shared plumbing: its Redis client, keys, scripts and stream helpers.

Owns: the state every part of the engine uses (client, settings, ShardKeys per shard,
loaded scripts), script calls, raw pipelined commands, pub/sub subscriptions and the
acked floor of a stream. Must not: implement a state transition or a query (the parts
in jobs.py, firing.py, runs.py, queries.py and archive_feed.py do, each holding this).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from rsched.engine.keys import GlobalKeys, QueueKeys, ShardKeys, TenantKeys, shard_of
from rsched.engine.scripts import Scripts
from rsched.engine.types import id_lt, next_id, text
from rsched.errors import ConfigError
from rsched.names import validate_tenant
from rsched.settings import RedisSettings

log = logging.getLogger(__name__)
NOTE_S = 10.0  # a listing-only set member (a queue name) is re-added this often per process


class Recent:
    """Members this process added to listing-only sets lately: each is re-added at most
    every NOTE_S seconds (one command less per created job; nothing but listings reads
    these sets, and a member is never removed by the engine)."""

    def __init__(self) -> None:
        self._at: dict[Any, float] = {}

    def due(self, members: Iterable[Any]) -> list[Any]:
        """The members not added within NOTE_S, marked as added now (``undo`` if the
        write fails)."""
        now = time.monotonic()
        out = [m for m in members if self._at.get(m, -NOTE_S) + NOTE_S <= now]
        if out:
            if len(self._at) > 10_000:
                self._at.clear()
            self._at.update(dict.fromkeys(out, now))
        return out

    def undo(self, members: Iterable[Any]) -> None:
        for m in members:
            self._at.pop(m, None)


class Core:
    def __init__(self, redis: Any, cfg: RedisSettings, *, events_maxlen: int) -> None:
        self.redis = redis
        self.cfg = cfg
        self.shards = cfg.shards
        self.global_keys = GlobalKeys(cfg.prefix)
        self.shard_keys = [ShardKeys(cfg.prefix, s) for s in range(cfg.shards)]
        self.scripts = Scripts()
        self.maxlen = events_maxlen
        self.done_ttl_ms = int(cfg.done_job_ttl_s * 1000)
        self._stream_of: dict[str, tuple[int, str]] = {}
        self._tenants: dict[str, TenantKeys] = {}

    async def start(self) -> None:
        """Load scripts and check the shard count stored for this deployment."""
        await self.scripts.load(self.redis)
        meta = self.global_keys.meta
        await self.redis.hsetnx(meta, "shards", self.shards)
        stored = int(await self.redis.hget(meta, "shards"))
        if stored != self.shards:
            raise ConfigError(
                f"deployment {self.cfg.prefix!r} has {stored} shards, settings say {self.shards}"
            )

    def keys_for(self, job_id: str) -> ShardKeys:
        return self.shard_keys[shard_of(job_id, self.shards)]

    def queue_keys(self, queue: str) -> QueueKeys:
        return QueueKeys(self.cfg.prefix, queue)

    def level_commands(self, jobs: Iterable[Any]) -> list[tuple[Any, ...]]:
        """SADDs recording the explicit priorities jobs use in their queue's levels set,
        so workers read those lanes (one per queue, only for jobs that set one; never
        skipped: a lane missing from the set would not be read)."""
        levels: dict[str, set[int]] = {}
        for d in jobs:
            if d.priority is not None:
                levels.setdefault(d.queue, set()).add(d.priority)
        return [("SADD", self.queue_keys(q).levels, *sorted(p)) for q, p in levels.items()]

    async def note_levels(self, jobs: Iterable[Any]) -> None:
        cmds = self.level_commands(jobs)
        if cmds:
            await self.raw(cmds)

    def tenant_keys(self, tenant: str) -> TenantKeys:
        """A tenant's keys, kept per tenant (built, validated and formatted once, not on
        every created job)."""
        keys = self._tenants.get(tenant)
        if keys is None:
            keys = TenantKeys(self.cfg.prefix, validate_tenant(tenant))
            if len(self._tenants) > 10_000:
                self._tenants.clear()
            self._tenants[tenant] = keys
        return keys

    async def call(self, name: str, keys: dict[str, str], args: dict[str, Any]) -> Any:
        return await self.scripts.call(self.redis, name, keys, args)

    async def call_after(self, commands: list[tuple[Any, ...]], name: str,
                         keys: dict[str, str], args: dict[str, Any],
                         then: Sequence[tuple[Any, ...]] = ()) -> tuple[Any, list[Any]]:
        """Plain ``commands``, the script ``name``, then ``then`` in one pipelined round
        trip (not atomic together: each command and the script are, one by one). Returns
        the script's reply and the replies of ``then``; a failed plain command raises.
        On NOSCRIPT the scripts are loaded and the script and ``then`` sent again."""
        script = self.scripts[name]
        call = ("EVALSHA", script.sha, len(script.keys), *script.order(keys, args))
        replies = await self._raw_replies([*commands, call, *then])
        reply = replies[len(commands)]
        if isinstance(reply, NoScriptError):
            await self.scripts.load(self.redis)
            replies = await self._raw_replies([call, *then])
            reply, replies = replies[0], [None] * len(commands) + replies
        for r in replies[:len(commands)] + replies[len(commands) + 1:]:
            if isinstance(r, Exception):
                raise r
        if isinstance(reply, Exception):
            raise reply
        return reply, replies[len(commands) + 1:]

    def streams(self, queues: Iterable[str]) -> dict[str, tuple[int, str]]:
        """Every shard's stream of each queue -> (shard, queue)."""
        out = {}
        for q in queues:
            for k in self.shard_keys:
                out[k.queue(q)] = (k.shard, q)
        self._stream_of.update(out)
        return out

    def stream_of(self, stream: str) -> tuple[int, str]:
        return self._stream_of[stream]

    async def raw(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Plain commands pipelined, replies unparsed: on the hiredis fast path when the
        client has one (redis-py packs ~150,000 XACK ids noticeably slower)."""
        replies = await self._raw_replies(commands)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def _raw_replies(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Like ``raw``, error replies returned in place as exceptions."""
        execute_many = getattr(self.redis, "execute_many", None)
        if execute_many is not None:
            return list(await execute_many(commands))
        pipe = self.redis.pipeline(transaction=False)
        for cmd in commands:
            pipe.execute_command(*cmd)
        return list(await pipe.execute(raise_on_error=False))

    async def trim_acked(self, stream: str) -> int:
        floor = await self.oldest_unacked(stream)
        if floor is None:
            return 0
        return int(await self.redis.xtrim(stream, minid=floor, approximate=False))

    async def oldest_unacked(self, stream: str) -> str | None:
        """The smallest id some group still needs (oldest pending, else next unread)."""
        try:
            groups = await self.redis.xinfo_groups(stream)
        except ResponseError:
            return None
        floor: str | None = None
        for g in groups:
            pend = await self.redis.xpending(stream, g["name"])
            cand = text(pend["min"]) if pend["pending"] else next_id(text(g["last-delivered-id"]))
            floor = cand if floor is None or id_lt(cand, floor) else floor
        return floor

    async def ensure_group(self, stream: str, group: str, start: str = "0") -> None:
        try:
            await self.redis.xgroup_create(stream, group, id=start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def subscribe(self, channel: str, ready: asyncio.Event | None = None
                        ) -> AsyncIterator[str]:
        """Messages of ``channel``, forever: a lost subscription (Redis down, restarted,
        or any other error) is logged and made again with back-off, so a listener never
        dies silently. Messages published while unsubscribed are lost; every listener
        has a slower path that does not need them (full scans, lease checks)."""
        backoff = 0.1
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(channel)
                if ready is not None:
                    ready.set()  # subscribed: messages from now on are heard
                backoff = 0.1
                async for msg in pubsub.listen():
                    if msg["type"] == "message":
                        yield text(msg["data"])
            except Exception as exc:  # noqa: BLE001 - any failure means: subscribe again
                log.warning("subscription to %s lost (%s: %s); subscribing again in %.1fs",
                            channel, type(exc).__name__, exc, backoff)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)


class Part:
    """One part of the engine (jobs, firing, runs, queries, ...): the shared Core and the
    shortcuts every part uses."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.redis = core.redis
        self.shard_keys = core.shard_keys
        self.global_keys = core.global_keys
