"""A lean asyncio Redis connection for the engine's hot path (hiredis, no layers).

Owns: one multiplexed connection for ordinary commands and pipelines (Redis answers in
order, so many coroutines share it), one dedicated connection per blocking read, and
the mapping of error replies to redis-py's exception classes.
Must not: know key names or scripts, or retry anything.

Why: with redis-py's asyncio client a round trip costs ~140 µs of client CPU on the
benchmark machine (pool checkout, retry wrapper, instrumentation, pure-Python command
packing); here it is ~35 µs (docs/benchmarks.md). ``FastRedis`` wraps a redis-py
client and implements only what the hot path calls: ``evalsha``, pipelines made only of
``evalsha``, ``xreadgroup`` and ``time``, with redis-py's return shapes. Every other
attribute (pub/sub, admin commands, mixed pipelines) is the wrapped client's, so callers
see one interface. Nothing is retried: a command whose connection broke raises
ConnectionError and the caller decides, as every engine script is fenced or a
compare-and-set and the roles back off and try again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any, cast

import hiredis
from redis._parsers.base import BaseParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class _Error(Exception):
    """An error reply as hiredis hands it over; converted before anyone sees it."""


def _convert(reply: Any) -> Any:
    if isinstance(reply, _Error):
        return BaseParser.parse_error(str(reply))  # type: ignore[no-untyped-call]
    return reply


class _Conn(asyncio.Protocol):
    """One connection; replies resolve waiters first in, first out."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader(replyError=_Error)
        self._waiters: collections.deque[tuple[asyncio.Future[Any], list[Any], int]] = (
            collections.deque())
        self._transport: asyncio.Transport | None = None
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._out: list[bytes] = []  # packed commands written at the end of this iteration
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they have its methods
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while self._waiters:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError:
                self.close()
                return
            if reply is False:
                return
            fut, replies, want = self._waiters[0]
            replies.append(reply)
            if len(replies) == want:
                self._waiters.popleft()
                if not fut.done():  # a cancelled caller's reply is read and dropped
                    fut.set_result(replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()
        if not self._lost.done():
            self._lost.set_result(None)

    async def wait_closed(self) -> None:
        """Until the transport has really released its socket (close() only schedules it)."""
        self.close()
        if self._transport is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await asyncio.shield(self._lost)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._transport is not None:
            self._transport.close()
        while self._waiters:
            fut = self._waiters.popleft()[0]
            if not fut.done():
                fut.set_exception(RedisConnectionError("connection to Redis lost"))

    def send(self, packed: bytes, count: int) -> asyncio.Future[list[Any]]:
        """Write ``count`` packed commands; the future gets their replies."""
        if self.closed or self._transport is None:
            raise RedisConnectionError("connection to Redis is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Any]] = loop.create_future()
        self._waiters.append((fut, [], count))
        # Writes of one loop iteration go out in one send (many coroutines calling at
        # once, e.g. 50 schedule() calls in flight: a syscall each cost more than the rest)
        if not self._out:
            loop.call_soon(self._flush)
        self._out.append(packed)
        return fut

    def _flush(self) -> None:
        out, self._out = self._out, []
        if not self.closed and self._transport is not None and out:
            self._transport.write(b"".join(out))


class FastRedis:
    """The hot-path commands over ``_Conn``; everything else is ``slow``'s."""

    def __init__(self, slow: Any) -> None:
        self.slow = slow
        kw = slow.connection_pool.connection_kwargs
        self._path: str | None = kw.get("path")
        self._host: str = kw.get("host", "localhost")
        self._port: int = int(kw.get("port", 6379))
        self._db = int(kw.get("db", 0) or 0)
        self._auth = [a for a in (kw.get("username"), kw.get("password")) if a]
        self._timeout: float | None = kw.get("socket_timeout")
        self._connect_timeout: float | None = kw.get("socket_connect_timeout") or 10.0
        self._shared: _Conn | None = None
        self._idle: list[_Conn] = []  # for blocking reads
        self._lock = asyncio.Lock()

    @staticmethod
    def usable(slow: Any) -> bool:
        """Whether ``slow``'s connection options are ones this client reproduces (no TLS,
        RESP2, bytes replies)."""
        pool = slow.connection_pool
        kw = pool.connection_kwargs
        return (not kw.get("decode_responses") and kw.get("protocol") in (None, 2, "2")
                and "ssl" not in pool.connection_class.__name__.lower())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.slow, name)

    # -- connections --------------------------------------------------------------------
    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                if self._path:
                    _, conn = await loop.create_unix_connection(_Conn, self._path)
                else:
                    _, conn = await loop.create_connection(_Conn, self._host, self._port)
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {exc}") from exc
        setup = ([("AUTH", *self._auth)] if self._auth else []) + (
            [("SELECT", self._db)] if self._db else [])
        if setup:
            for reply in await self._roundtrip(conn, setup):
                if isinstance(reply, Exception):
                    conn.close()
                    raise reply
        return conn

    async def _shared_conn(self) -> _Conn:
        conn = self._shared
        if conn is None or conn.closed:
            async with self._lock:
                if self._shared is None or self._shared.closed:
                    self._shared = await self._connect()
                conn = self._shared
        return conn

    async def _roundtrip(self, conn: _Conn, commands: list[tuple[Any, ...]],
                         timeout: float | None = None) -> list[Any]:
        packed = b"".join(hiredis.pack_command(c) for c in commands)
        fut = conn.send(packed, len(commands))
        limit = self._timeout if timeout is None else timeout
        try:
            if limit is None:
                replies = await fut
            else:
                async with asyncio.timeout(limit):
                    replies = await fut
        except TimeoutError as exc:
            conn.close()  # its later replies would go to the wrong waiters
            raise RedisTimeoutError("timeout reading from Redis") from exc
        return [_convert(r) for r in replies]

    async def execute_many(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Pipelined commands on the shared connection; error replies come back as
        exception instances, in place."""
        if not commands:
            return []
        return await self._roundtrip(await self._shared_conn(), commands)

    async def _one(self, *command: Any) -> Any:
        reply = (await self.execute_many([command]))[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    # -- the hot-path commands ----------------------------------------------------------
    async def evalsha(self, sha: str, numkeys: int, *args: Any) -> Any:
        return await self._one("EVALSHA", sha, numkeys, *args)

    async def time(self) -> tuple[int, int]:
        sec, usec = await self._one("TIME")
        return int(sec), int(usec)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        if transaction or shard_hint is not None:
            return self.slow.pipeline(transaction=transaction, shard_hint=shard_hint)
        return FastPipeline(self)

    async def xreadgroup(self, groupname: str, consumername: str, streams: dict[Any, Any],
                         count: int | None = None, block: int | None = None,
                         noack: bool = False) -> list[Any]:
        cmd: list[Any] = ["XREADGROUP", "GROUP", groupname, consumername]
        if count is not None:
            cmd += ["COUNT", count]
        if block is not None:
            cmd += ["BLOCK", block]
        if noack:
            cmd.append("NOACK")
        cmd += ["STREAMS", *streams, *streams.values()]
        if block is None:
            reply = await self._one(*cmd)
        else:
            reply = await self._blocking(tuple(cmd), block)
        return _parse_xread(reply)

    async def _blocking(self, command: tuple[Any, ...], block_ms: int) -> Any:
        """A blocking command on a connection of its own (it would hold up every reply
        queued behind it on the shared one)."""
        conn = self._idle.pop() if self._idle else await self._connect()
        # No socket timeout shorter than the block itself (0 = forever).
        limit = None if self._timeout is None or block_ms == 0 else (
            self._timeout + block_ms / 1000)
        try:
            reply = (await self._roundtrip(conn, [command], timeout=limit))[0]
        except BaseException:
            conn.close()  # cancelled mid-read: its reply must never reach another caller
            raise
        if not conn.closed:
            self._idle.append(conn)
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def aclose(self) -> None:
        conns = [c for c in (self._shared, *self._idle) if c is not None]
        self._shared, self._idle = None, []
        for conn in conns:
            await conn.wait_closed()
        await self.slow.aclose()


class FastPipeline:
    """Records calls; runs them on the fast path when all are EVALSHA, else replays them
    on a redis-py pipeline. Like redis-py's, ``execute`` raises the first error reply
    (after reading every reply) unless ``raise_on_error=False``."""

    def __init__(self, owner: FastRedis) -> None:
        self._owner = owner
        self._calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> FastPipeline:
            self._calls.append((name, args, kwargs))
            return self

        return record

    def __len__(self) -> int:
        return len(self._calls)

    async def __aenter__(self) -> FastPipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._calls = []

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        calls, self._calls = self._calls, []
        if all(name == "evalsha" and not kw for name, _, kw in calls):
            replies = await self._owner.execute_many([("EVALSHA", *args)
                                                      for _, args, _ in calls])
        else:
            pipe = self._owner.slow.pipeline(transaction=False)
            for name, args, kw in calls:
                getattr(pipe, name)(*args, **kw)
            return list(await pipe.execute(raise_on_error=raise_on_error))
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return replies


def _parse_xread(reply: Any) -> list[Any]:
    """redis-py's shape: [[stream, [(entry id, {field: value}), ...]], ...]."""
    if reply is None:
        return []
    out = []
    for stream, entries in reply:
        parsed: list[tuple[Any, Any]] = []
        for entry in entries or []:
            if entry is None:
                parsed.append((None, None))
                continue
            fields = entry[1]
            parsed.append((entry[0], None if fields is None else
                           dict(zip(fields[::2], fields[1::2], strict=True))))
        out.append([stream, parsed])
    return out
