"""The OpenAPI document lists exactly the routes the app serves, and the docs page is local."""

from __future__ import annotations

import json

from starlette.routing import Route

from api.app import route_table
from api.openapi import document
from tests.api.conftest import Api


def test_every_route_is_documented_and_nothing_else() -> None:
    doc = json.loads(document())
    assert doc["openapi"] == "3.1.0"
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = {(m, r.path) for r in route_table() if isinstance(r, Route)
              for m in (r.methods or ()) if m != "HEAD"}
    served -= {("GET", "/api/v1/openapi.json"), ("GET", "/api/v1/docs")}
    assert documented == served


async def test_openapi_and_docs_need_no_key_and_load_nothing_remote(api: Api) -> None:
    anon = api.anonymous()
    r = await anon.get("/api/v1/openapi.json")
    assert r.status_code == 200 and "JobIn" in r.json()["components"]["schemas"]
    page = await anon.get("/api/v1/docs")
    assert page.status_code == 200 and "openapi.json" in page.text
    assert "http://" not in page.text and "https://" not in page.text
