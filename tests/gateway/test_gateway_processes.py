"""`usage-service serve` and `usage-service gateway` as two processes, on SQLite and on the session's
real PostgreSQL (the `db_url` fixture): the gateway reaches the server over the network, and both stop
cleanly on SIGTERM."""

from __future__ import annotations

import pathlib
import re

import httpx
import pytest
from gateway_process import GRPC_LISTENING, JWT_SECRET, Process, start_gateway, token

pytestmark = pytest.mark.e2e


def test_serve_and_gateway_processes(db_url: str, tmp_path: pathlib.Path) -> None:
    serve = Process(
        [
            "serve",
            "--port",
            "0",
            "--database-url",
            db_url,
            "--data-dir",
            str(tmp_path / "data"),
            "--jwt-secret",
            JWT_SECRET,
        ],
        tmp_path / "serve.log",
    )
    try:
        port = int(serve.wait_for(GRPC_LISTENING).group(2))
        with start_gateway(f"127.0.0.1:{port}", tmp_path / "gateway.log") as gateway:
            assert re.match(r"^http://127\.0\.0\.1:\d+$", gateway.url)
            headers = {"authorization": f"Bearer {token('org_proc')}"}
            with httpx.Client(base_url=gateway.url, headers=headers, timeout=60) as http:
                _exercise(http)
            assert gateway.terminate() == 0
            assert "usage-service gateway stopped" in gateway.rest_of_stdout()
    finally:
        assert serve.terminate() == 0


def _exercise(http: httpx.Client) -> None:
    events = [
        {
            "customer_id": "cus_p",
            "metric_key": "api_call",
            "timestamp": f"2026-03-0{d}T12:00:00Z",
            "quantity": "0.1",
            "idempotency_key": f"k{d}",
            "properties": {"region": "eu", "n": d},
        }
        for d in (1, 2, 3)
    ]
    first = http.post("/v1/usage-events/batch", json={"events": events}).json()["results"]
    again = http.post("/v1/usage-events/batch", json={"events": events}).json()["results"]
    assert [r["status"] for r in first] == ["ACCEPTED"] * 3
    assert [(r["status"], r["event_id"]) for r in again] == [("DUPLICATE", r["event_id"]) for r in first]
    created = http.post(
        "/v1/aggregators", json={"id": "agg_p", "name": "P", "event_type": "api_call", "operation": "count"}
    )
    assert created.status_code == 200, created.text
    window = {"start_date": "2026-03-01T00:00:00Z", "end_date": "2026-03-03T00:00:00Z", "take": 1}
    page = http.get("/v1/customers/cus_p/usage/agg_p/events", params=window).json()
    assert page["meta"] == {"total": 2, "taken": 1, "skipped": 0}
    assert page["data"][0]["payload"] == {"region": "eu", "n": 2}
    listed = http.get("/v1/usage-events", params={"metric_key": "api_call,other", "limit": 10}).json()
    assert [e["idempotency_key"] for e in listed["data"]] == ["k3", "k2", "k1"]
    aggregate = http.get(
        "/v1/usage-events/aggregate",
        params={
            "bucket": "day",
            "since": "2026-03-01T00:00:00Z",
            "until": "2026-03-04T00:00:00Z",
            "metric": "sum_quantity",
            "group_by": "dim:region",
        },
    ).json()
    assert [(s["key"], round(s["total"], 9)) for s in aggregate["series"]] == [("eu", 0.3)]
    duplicate = http.post("/v1/customers", json={"id": "cus_p", "name": "again"})
    assert (duplicate.status_code, duplicate.json()["code"]) == (409, 6)
    missing = http.get("/v1/customers/cus_nobody")
    assert (missing.status_code, missing.json()["code"]) == (404, 5)
