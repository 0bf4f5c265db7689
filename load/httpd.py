"""A minimal HTTP server for the benchmark's ``bench.http`` task: answers every request
with a short 200. Raw asyncio protocol, keep-alive, so its own cost stays small.

    python -m load.httpd PORT

Owns: the local server. Must not: know the engine.
"""

from __future__ import annotations

import asyncio
import sys

_REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class _Http(asyncio.Protocol):
    def __init__(self) -> None:
        self._buf = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buf += data
        while (end := self._buf.find(b"\r\n\r\n")) >= 0:  # GET only: no bodies
            self._buf = self._buf[end + 4:]
            assert self._transport is not None
            self._transport.write(_REPLY)


async def serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Http, "127.0.0.1", port,
                                                            backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
