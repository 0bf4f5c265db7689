"""`rsched keys create|list|revoke` and `rsched api` serving real HTTP under uvicorn."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from typing import Any

import httpx

from tests.support.procs import RSCHED, eventually, run_cli


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_keys_cli_and_a_real_uvicorn(redis_url: str, prefix: str, tmp_path: Any) -> None:
    env = {"RSCHED_REDIS__URL": redis_url, "RSCHED_REDIS__PREFIX": prefix,
           "RSCHED_REDIS__SHARDS": "4", "RSCHED_ARCHIVER__DSN": "",
           "RSCHED_API__KEY_CACHE_S": "0"}
    made = run_cli("keys", "create", "acme", "--role", "write", env=env)
    assert made.returncode == 0, made.stderr
    token = made.stdout.splitlines()[0]
    key_id = token.split("_")[1]
    listed = run_cli("keys", "list", "--json", env=env)
    assert [(k["id"], k["tenant"]) for k in json.loads(listed.stdout)] == [(key_id, "acme")]
    assert token.split("_")[2] not in listed.stdout
    port = free_port()
    log = (tmp_path / "api.log").open("wb")
    proc = subprocess.Popen([*RSCHED, "api", "--port", str(port)], stdout=log, stderr=log,
                            env={**os.environ, **env})
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            async def up() -> bool:
                try:
                    return (await c.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(up, "rsched api to answer")
            auth = {"Authorization": f"Bearer {token}"}
            r = await c.post("/api/v1/jobs", json={"task": "t"}, headers=auth)
            assert r.status_code == 201, r.text
            assert (await c.get("/api/v1/openapi.json")).json()["openapi"] == "3.1.0"
            assert "<title>rsched API</title>" in (await c.get("/api/v1/docs")).text
            assert run_cli("keys", "revoke", key_id, env=env).returncode == 0
            assert (await c.get("/api/v1/jobs", headers=auth)).status_code == 401
            assert run_cli("keys", "revoke", "nope", env=env).returncode == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
