"""Private redis-server and PostgreSQL processes for `rsched dev` and the test fixtures.

Owns: finding binaries, free ports, starting/stopping/killing servers in temp dirs.
Must not: be used in production roles (they connect to configured servers).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rsched.archive.pg import with_schema
from rsched.errors import ConfigError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now (a dev server falls back to a free one)."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def reachable(host: str, port: int, timeout_s: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _wait_port(port: int, proc: subprocess.Popen[bytes] | None, what: str,
               timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if reachable("127.0.0.1", port):
            return
        if proc is not None and proc.poll() is not None:
            raise ConfigError(f"{what} exited with {proc.returncode}")
        time.sleep(0.05)
    raise ConfigError(f"{what} did not listen on port {port} within {timeout_s}s")


@dataclass
class RedisServer:
    """A redis-server on a free port in a temp dir; restartable for crash tests."""

    appendonly: bool = False
    port: int = field(default_factory=free_port)
    dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="rsched-redis-"))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ConfigError("redis-server not found: install the redis-server package")
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                "--save", "", "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", "always", "--daemonize", "no", "--logfile",
                os.path.join(self.dir, "redis.log")]
        # A session of its own: a Ctrl-C or a group signal meant for the program that
        # started it must not stop the server before that program has stopped its roles.
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        _wait_port(self.port, self.proc, "redis-server")
        return self

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.proc.wait(timeout=10)
        self.proc = None

    def cleanup(self) -> None:
        self.stop(kill=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise ConfigError("PostgreSQL binaries (initdb, pg_ctl) not found: install postgresql")


@dataclass
class PostgresServer:
    """A private PostgreSQL cluster (initdb + pg_ctl) on a free port; trust auth."""

    port: int = field(default_factory=free_port)
    dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="rsched-pg-"))
    user: str = "rsched"

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = [str(pg_bindir() / args[0]), *args[1:]]
        env = dict(os.environ, LC_ALL="C.UTF-8")
        uid, gid = _postgres_ids()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       env=env, user=uid, group=gid, start_new_session=True)  # as RedisServer

    def init(self) -> PostgresServer:
        data = os.path.join(self.dir, "data")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", data, "-U", self.user, "-A", "trust", "--no-sync", "-E", "UTF8")
        return self

    def start(self) -> PostgresServer:
        data = os.path.join(self.dir, "data")
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories="
                f"{self.dir} -c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", data, "-l", os.path.join(self.dir, "pg.log"), "-o", opts,
                  "-w", "start")
        _wait_port(self.port, None, "postgres")
        return self

    def stop(self, mode: str = "fast") -> None:
        data = os.path.join(self.dir, "data")
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            self._run("pg_ctl", "-D", data, "-m", mode, "-w", "stop")

    def cleanup(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def _postgres_ids() -> tuple[int | None, int | None]:
    # initdb refuses to run as root; drop to the postgres system user when we are root.
    if os.geteuid() != 0:
        return None, None
    import pwd

    pw = pwd.getpwnam("postgres")
    return pw.pw_uid, pw.pw_gid


# -- the stores of `rsched dev` ----------------------------------------------------------
DEV_PREFIX = "rsched-dev"  # key prefix on a shared Redis
DEV_SCHEMA = "rsched_dev"  # PostgreSQL schema on a shared server


@dataclass
class DevStores:
    """Where `rsched dev` keeps its data: settings overrides, the private servers it
    started (stopped by cleanup) and one line per store for the user."""

    overrides: dict[str, Any] = field(default_factory=dict)
    servers: list[RedisServer | PostgresServer] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    schema: str | None = None  # a schema dev must create on a shared PostgreSQL

    def cleanup(self) -> None:
        for server in self.servers:
            server.cleanup()


def dev_stores(redis_url: str, prefix: str, dsn: str) -> DevStores:
    """Reachable stores are shared: dev keeps to the key prefix ``rsched-dev`` (unless a
    prefix was set) and the schema ``rsched_dev`` (unless the DSN sets a search_path).
    Unreachable ones are replaced by private servers, removed when dev stops."""
    out = DevStores()
    prefix = DEV_PREFIX if prefix == "rsched" else prefix
    out.overrides["redis.prefix"] = prefix
    url = urlparse(redis_url)
    if url.scheme != "redis" or reachable(url.hostname or "127.0.0.1", url.port or 6379):
        out.lines.append(f"Redis: {redis_url} (shared), keys under {prefix}:")
    else:
        server = RedisServer().start()
        out.servers.append(server)
        redis_url = out.overrides["redis.url"] = server.url
        out.lines.append(f"Redis: started a private redis-server at {server.url}"
                         f" (removed at exit), keys under {prefix}:")
    out.overrides["archiver.dsn"] = _dev_archive(dsn, out)
    env = f"RSCHED_REDIS__URL={redis_url} RSCHED_REDIS__PREFIX={prefix}"
    if out.overrides["archiver.dsn"]:
        env += f" RSCHED_ARCHIVER__DSN=\"{out.overrides['archiver.dsn']}\""
    out.lines.append(f"inspect it with: {env} rsched status")
    return out


def _dev_archive(dsn: str, out: DevStores) -> str:
    db = urlparse(dsn)
    if reachable(db.hostname or "127.0.0.1", db.port or 5432):
        if "search_path" in dsn:
            out.lines.append(f"PostgreSQL: {dsn} (shared), schema from its search_path")
            return dsn
        out.lines.append(f"PostgreSQL: {dsn} (shared), schema {DEV_SCHEMA}")
        out.schema = DEV_SCHEMA
        return with_schema(dsn, DEV_SCHEMA)
    try:
        server = PostgresServer()
        out.servers.append(server)
        server.init().start()
    except (ConfigError, OSError, subprocess.CalledProcessError) as exc:
        out.lines.append(f"PostgreSQL: none ({exc}); running without the archive")
        return ""
    out.lines.append(f"PostgreSQL: started a private server at {server.dsn} (removed at exit)")
    return server.dsn
