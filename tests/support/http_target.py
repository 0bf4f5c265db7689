"""A real HTTP server on loopback for HTTP task tests (http.server in a thread).

Endpoints: /ok (200 "hello"), /flaky/<key> (500 the first time, then 200), /missing
(404), /limited/<key> (429 with Retry-After: 2 the first time, then 200), /slow (answers
after 5 s, or at teardown), /echo?status=N (N, body = the X-Token header), /big (100 kB).
Every request is recorded: path, method, headers, body, monotonic time.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Hit:
    path: str
    method: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Target:
    base: str
    hits: list[Hit] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return self.base + path

    def to(self, path: str) -> list[Hit]:
        return [h for h in self.hits if urlsplit(h.path).path == path]


def _handler(target: Target) -> type[BaseHTTPRequestHandler]:
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
                    ) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            with lock:
                seen[parts.path] += 1
                first = seen[parts.path] == 1
                target.hits.append(Hit(self.path, self.command, dict(self.headers), body,
                                       time.monotonic()))
            target.arrived.set()
            if parts.path == "/slow":
                target.release.wait(5)
            self._answer(*_route(parts.path, parts.query, first, self.headers.get("X-Token")))

        do_GET = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815

    return Handler


def _route(path: str, query: str, first: bool, token: str | None
           ) -> tuple[int, bytes, dict[str, str]]:
    route = path.split("/")[1]
    if route == "flaky":
        return (500, b"not yet", {}) if first else (200, b"fine", {})
    if route == "limited":
        return (429, b"slow down", {"Retry-After": "2"}) if first else (200, b"ok now", {})
    if route == "echo":
        status = int(parse_qs(query).get("status", ["200"])[0])
        return status, f"token={token}".encode(), {}
    fixed = {"ok": (200, b"hello"), "missing": (404, b"no such thing"), "slow": (200, b"late"),
             "big": (200, b"x" * 100_000)}
    status, body = fixed.get(route, (418, b"?"))
    return status, body, {}


def serve() -> Iterator[Target]:
    """Start a target; yields it; stops it (answering slow requests first)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(Target("")))
    target = Target(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(target)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield target
    finally:
        target.release.set()
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
