"""The engine's shared plumbing: its Redis client, keys, scripts and stream helpers.

Owns: the state every part of the engine uses (client, settings, ShardKeys per shard,
loaded scripts), script calls, raw pipelined commands and the acked-floor of a stream.
Must not: implement a state transition or a query (engine.py, queries.py and
archive_feed.py do, as parts of the one `Engine` that owns Redis).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from redis.exceptions import ResponseError

from rsched.errors import ConfigError
from rsched.keys import GlobalKeys, ShardKeys, shard_of
from rsched.scripts import Scripts
from rsched.settings import RedisSettings
from rsched.wire import id_lt, next_id, text


class EngineBase:
    def __init__(self, redis: Any, cfg: RedisSettings, *, events_maxlen: int = 1_000_000) -> None:
        self.redis = redis
        self.cfg = cfg
        self.shards = cfg.shards
        self.g = GlobalKeys(cfg.prefix)
        self.k = [ShardKeys(cfg.prefix, s) for s in range(cfg.shards)]
        self.scripts = Scripts()
        self.maxlen = events_maxlen
        self.done_ttl_ms = int(cfg.done_job_ttl_s * 1000)
        self._stream_of: dict[str, tuple[int, str]] = {}

    async def start(self) -> None:
        """Load scripts and check the shard count stored for this deployment."""
        await self.scripts.load(self.redis)
        await self.redis.hsetnx(self.g.meta, "shards", self.shards)
        stored = int(await self.redis.hget(self.g.meta, "shards"))
        if stored != self.shards:
            raise ConfigError(
                f"deployment {self.cfg.prefix!r} has {stored} shards, settings say {self.shards}"
            )

    def keys_for(self, job_id: str) -> ShardKeys:
        return self.k[shard_of(job_id, self.shards)]

    async def _call(self, name: str, keys: dict[str, str], args: dict[str, Any]) -> Any:
        return await self.scripts.call(self.redis, name, keys, args)

    def _streams(self, queues: Iterable[str]) -> dict[str, tuple[int, str]]:
        out = {}
        for q in queues:
            for k in self.k:
                out[k.queue(q)] = (k.shard, q)
        self._stream_of.update(out)
        return out

    async def _raw(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Plain commands pipelined, replies unparsed: on the hiredis fast path when the
        client has one (redis-py packs ~150,000 XACK ids noticeably slower)."""
        execute_many = getattr(self.redis, "execute_many", None)
        if execute_many is not None:
            replies = await execute_many(commands)
        else:
            pipe = self.redis.pipeline(transaction=False)
            for cmd in commands:
                pipe.execute_command(*cmd)
            replies = await pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return list(replies)

    async def _trim_acked(self, stream: str) -> int:
        floor = await self._oldest_unacked(stream)
        if floor is None:
            return 0
        return int(await self.redis.xtrim(stream, minid=floor, approximate=False))

    async def _oldest_unacked(self, stream: str) -> str | None:
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
