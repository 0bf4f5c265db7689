"""schemathesis against /api/v1/openapi.json on a real uvicorn: no 500, every status code
and content type documented, every response body valid against its schema."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.test_cli import free_port
from tests.support.procs import RSCHED, eventually, run_cli

ST = Path(sys.executable).with_name("st")
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance")


@pytest.mark.timeout(180)
async def test_openapi_document_holds_under_schemathesis(redis_url: str, prefix: str,
                                                         tmp_path: Any) -> None:
    env = {**os.environ, "RSCHED_REDIS__URL": redis_url, "RSCHED_REDIS__PREFIX": prefix,
           "RSCHED_REDIS__SHARDS": "4", "RSCHED_ARCHIVER__DSN": "",
           "RSCHED_API__RATE_PER_S": "100000", "RSCHED_API__BURST": "100000"}
    token = run_cli("keys", "create", "fuzz", "--role", "admin", env=env).stdout.split()[0]
    port = free_port()
    server_log = (tmp_path / "api.log").open("wb")
    proc = subprocess.Popen([*RSCHED, "api", "--port", str(port), "--log-level", "warning"],
                            stdout=server_log, stderr=server_log, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        async def up() -> bool:
            try:
                async with httpx.AsyncClient() as c:
                    return (await c.get(f"{base}/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(up, "rsched api to answer")
        result = subprocess.run(
            [str(ST), "run", f"{base}/api/v1/openapi.json", "--checks", CHECKS,
             "--max-examples", "15", "--generation-deterministic",
             "-H", f"Authorization: Bearer {token}", "--phases", "examples,coverage,fuzzing"],
            capture_output=True, text=True, timeout=150, env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        server_log.close()
