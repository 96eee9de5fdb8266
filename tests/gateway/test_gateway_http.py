"""End to end over real HTTP: `usage-service serve --http-port 0` (and `usage-service gateway` as its
own process), every route with the JSON shapes of the API documents, query parameter parsing, and the
error mapping for every code the service really produces."""

from __future__ import annotations

import json
import pathlib
import socket
import sqlite3
import time
from typing import Any

import httpx
import pytest
from gateway_process import ORG, Stack, start_gateway, token

from server.gateway import openapi, routes
from server.gateway.app import SERVICES

pytestmark = pytest.mark.e2e

WINDOW = {"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-02-01T00:00:00Z"}
EVENTS = [
    {
        "customer_id": "cus_1",
        "metric_key": "api_call",
        "timestamp": "2026-01-10T10:00:00Z",
        "properties": {"endpoint": "/v1/search", "method": "GET", "region": "eu"},
    },
    {
        "customer_id": "cus_1",
        "metric_key": "api_call",
        "timestamp": "2026-01-10T11:00:00Z",
        "properties": {"endpoint": "/v1/orders", "method": "POST", "region": "us"},
    },
    {
        "customer_id": "cus_1",
        "metric_key": "api_call",
        "timestamp": "2026-01-11T09:30:00Z",
        "properties": {"name": "named", "method": "GET"},
    },
    {
        "customer_id": "cus_1",
        "metric_key": "storage_gb",
        "timestamp": "2026-01-11T12:00:00Z",
        "quantity": "2.5",
    },
    {
        "customer_id": "cus_2",
        "metric_key": "email_sent",
        "timestamp": "2026-01-12T08:00:00Z",
        "quantity": "3",
    },
]


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def status(response: httpx.Response, http_status: int, code: int) -> dict[str, Any]:
    assert response.status_code == http_status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details"} and body["code"] == code, body
    return body


def violations(body: dict[str, Any]) -> list[str]:
    return [v["field"] for d in body["details"] for v in d.get("field_violations", [])]


@pytest.fixture(scope="module")
def seeded(stack: Stack) -> list[str]:
    """The events above, an aggregator with a display name property and a GET filter."""
    with stack.client() as http:
        results = ok(http.post("/v1/usage-events/batch", json={"events": EVENTS}))["results"]
        assert [r["status"] for r in results] == ["ACCEPTED"] * len(EVENTS)
        aggregator = {
            "id": "agg_api",
            "name": "API calls",
            "event_type": "api_call",
            "operation": "count",
            "display_name_property": "endpoint",
        }
        assert ok(http.post("/v1/aggregators", json=aggregator))["aggregator"]["id"] == "agg_api"
        flt = {
            "id": "flt_get",
            "name": "GET only",
            "filter": {"fields": [{"property": "method", "operator": "equals", "value": "GET"}]},
        }
        ok(http.post("/v1/aggregators/agg_api/filters", json=flt))
        return [r["event_id"] for r in results]


# ---- the three questions ---------------------------------------------------------------------
def test_list_customer_usage_events_in_the_document_shape(http: httpx.Client, seeded: list[str]) -> None:
    body = ok(http.get("/v1/customers/cus_1/usage/agg_api/events", params=WINDOW))
    assert body["meta"] == {"total": 3, "taken": 3, "skipped": 0}
    assert [set(e) for e in body["data"]] == [{"id", "name", "timestamp", "payload"}] * 3
    assert [e["id"] for e in body["data"]] == [seeded[2], seeded[1], seeded[0]]
    assert [e["name"] for e in body["data"]] == ["named", "/v1/orders", "/v1/search"]
    assert body["data"][2]["timestamp"] == "2026-01-10T10:00:00Z"
    assert body["data"][2]["payload"] == EVENTS[0]["properties"]
    page = ok(http.get("/v1/customers/cus_1/usage/agg_api/events", params={**WINDOW, "take": 1, "skip": 1}))
    assert page["meta"] == {"total": 3, "taken": 1, "skipped": 1} and page["data"][0]["id"] == seeded[1]
    # camelCase parameter names, and the aggregator filter
    camel = {
        "startDate": WINDOW["start_date"],
        "endDate": WINDOW["end_date"],
        "aggregatorFilterId": "flt_get",
    }
    gets = ok(http.get("/v1/customers/cus_1/usage/agg_api/events", params=camel))
    assert gets["meta"]["total"] == 2 and {e["payload"]["method"] for e in gets["data"]} == {"GET"}
    only_total = ok(http.get("/v1/customers/cus_1/usage/agg_api/events", params={**WINDOW, "take": 0}))
    assert only_total.pop("as_of") == gets["as_of"]  # nothing changed between the two reads
    assert only_total == {"meta": {"total": 3, "taken": 0, "skipped": 0}, "data": []}


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/v1/customers/cus_nobody/usage/agg_api/events", "Customer not found"),
        ("/v1/customers/cus_1/usage/agg_nothing/events", "Aggregator not found"),
    ],
)
def test_unknown_customer_or_aggregator_is_404(
    http: httpx.Client, seeded: list[str], path: str, message: str
) -> None:
    body = status(http.get(path, params=WINDOW), 404, 5)
    assert body["message"] == message
    assert body["details"][0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert body["details"][0]["reason"] == "NOT_FOUND"


def test_list_usage_events_repeated_comma_separated_and_cursor(http: httpx.Client, seeded: list[str]) -> None:
    query = [
        ("metric_key", "api_call,storage_gb"),
        ("metric_key", "email_sent"),
        ("limit", "2"),
        ("x", "ignored"),
    ]
    first = ok(http.get("/v1/usage-events", params=query))
    assert set(first) == {"data", "pagination", "as_of"}
    assert [e["id"] for e in first["data"]] == [seeded[4], seeded[3]]
    assert first["pagination"]["has_more"] is True and first["pagination"]["cursor"]
    event = first["data"][1]
    assert event["quantity"] == "2.5" and event["organization_id"] == ORG and event["properties"] == {}
    ids = [e["id"] for e in first["data"]]
    cursor = first["pagination"]["cursor"]
    while cursor:
        page = ok(http.get("/v1/usage-events", params=[*query, ("cursor", cursor)]))
        ids += [e["id"] for e in page["data"]]
        cursor = page["pagination"]["cursor"]
        assert page["pagination"]["has_more"] == bool(cursor)
    assert ids == seeded[::-1]
    only = ok(http.get("/v1/usage-events", params={"metricKey": "storage_gb", "customerId": "cus_1"}))
    assert [e["id"] for e in only["data"]] == [seeded[3]]
    window = {"occurred_after": "2026-01-11T00:00:00Z", "occurred_before": "2026-01-12T00:00:00Z"}
    assert len(ok(http.get("/v1/usage-events", params=window))["data"]) == 2
    # a cursor used with other filters is the service's INVALID_ARGUMENT
    other = status(http.get("/v1/usage-events", params={"cursor": first["pagination"]["cursor"]}), 400, 3)
    assert "cursor" in violations(other)


def test_aggregate_usage_in_the_document_shape(http: httpx.Client, seeded: list[str]) -> None:
    params = {
        "bucket": "day",
        "since": "2026-01-10T00:00:00Z",
        "until": "2026-01-13T00:00:00Z",
        "metric": "count",
        "group_by": "metric_key",
        "top": "1",
        "time_zone": "UTC",
    }
    body = ok(http.get("/v1/usage-events/aggregate", params=params))
    assert set(body) == {"bucket", "group_by", "metric", "series", "since", "until", "as_of"}
    assert (body["bucket"], body["group_by"], body["metric"]) == ("day", "metric_key", "count")
    assert (body["since"], body["until"]) == ("2026-01-10T00:00:00Z", "2026-01-13T00:00:00Z")
    series = {s["key"]: s for s in body["series"]}
    assert list(series) == ["api_call", "Other"] and series["Other"]["other"] is True
    assert [p["value"] for p in series["api_call"]["points"]] == [2, 1, 0]
    assert series["api_call"]["points"][0] == {
        "start": "2026-01-10T00:00:00Z",
        "value": 2.0,
        "exact_value": "2",
    }
    assert (series["api_call"]["total"], series["api_call"]["exact_total"]) == (3, "3")
    summed = ok(
        http.get(
            "/v1/usage-events/aggregate",
            params={
                "bucket": "week",
                "since": "2026-01-05T00:00:00Z",
                "until": "2026-01-19T00:00:00Z",
                "metric": "sum_quantity",
                "group_by": "dim:region",
                "metric_key": "api_call,storage_gb",
                "top": "0",
            },
        )
    )
    assert {s["key"]: s["total"] for s in summed["series"]} == {"": 3.5, "eu": 1.0, "us": 1.0}
    # The exact sums beside the doubles, as canonical decimal strings (JSON strings).
    assert {s["key"]: s["exact_total"] for s in summed["series"]} == {"": "3.5", "eu": "1", "us": "1"}
    assert [p["exact_value"] for p in summed["series"][0]["points"]] == ["3.5", "0"]


# ---- catalog ---------------------------------------------------------------------------------
def test_catalog_routes(http: httpx.Client) -> None:
    created = ok(http.post("/v1/customers", json={"id": "cus_new", "name": "New Co"}))["customer"]
    assert created["id"] == "cus_new" and created["created_at"].endswith("Z")
    assert ok(http.get("/v1/customers/cus_new"))["customer"]["name"] == "New Co"
    listed = ok(http.get("/v1/customers", params={"limit": 100}))
    assert "cus_new" in [c["id"] for c in listed["data"]] and listed["pagination"] == {
        "cursor": "",
        "has_more": False,
    }
    status(http.post("/v1/customers", json={"id": "cus_new", "name": "Again"}), 409, 6)

    agg = {"id": "agg_x", "name": "Exports", "eventType": "api_call", "operation": "count"}
    assert ok(http.post("/v1/aggregators", json=agg))["aggregator"]["event_type"] == "api_call"
    assert ok(http.get("/v1/aggregators/agg_x"))["aggregator"]["name"] == "Exports"
    assert "agg_x" in [a["id"] for a in ok(http.get("/v1/aggregators"))["data"]]
    patched = ok(
        http.patch(
            "/v1/aggregators/agg_x",
            params={"update_mask": "unitName"},
            json={"unit_name": "exports", "name": "not applied"},
        )
    )["aggregator"]
    assert (patched["name"], patched["unit_name"]) == ("Exports", "exports")
    flt = {"name": "EU", "filter": {"fields": [{"property": "region", "operator": "in", "value": ["eu"]}]}}
    made = ok(http.post("/v1/aggregators/agg_x/filters", json=flt))["aggregator_filter"]
    assert made["aggregator_id"] == "agg_x" and made["filter"]["fields"][0]["value"] == ["eu"]
    assert [f["id"] for f in ok(http.get("/v1/aggregators/agg_x/filters"))["data"]] == [made["id"]]
    assert ok(http.delete(f"/v1/aggregators/agg_x/filters/{made['id']}")) == {}
    assert ok(http.delete("/v1/aggregators/agg_x")) == {}
    status(http.get("/v1/aggregators/agg_x"), 404, 5)


def test_patch_without_update_mask_changes_only_the_fields_in_its_body(http: httpx.Client) -> None:
    flt = {"fields": [{"property": "region", "operator": "equals", "value": "eu-west"}]}
    agg = {
        "id": "agg_patch",
        "name": "EU calls",
        "event_type": "api_call",
        "operation": "count",
        "filter": flt,
    }
    ok(http.post("/v1/aggregators", json=agg))
    patched = ok(http.patch("/v1/aggregators/agg_patch", json={"unitName": "requests"}))["aggregator"]
    assert patched["unit_name"] == "requests"
    assert (patched["name"], patched["event_type"]) == ("EU calls", "api_call")
    assert patched["filter"] == {"conditional": "and", **flt}  # kept
    renamed = ok(http.patch("/v1/aggregators/agg_patch", json={"name": "Calls in the EU", "filter": None}))
    assert renamed["aggregator"]["name"] == "Calls in the EU" and "filter" not in renamed["aggregator"]
    # A field of the mask that breaks a rule is still refused, naming it.
    assert "aggregator.name" in violations(
        status(http.patch("/v1/aggregators/agg_patch", json={"name": ""}), 400, 3)
    )
    ok(http.delete("/v1/aggregators/agg_patch"))


@pytest.mark.parametrize(
    ("path", "body", "parameter"),
    [
        ("/v1/customers", "anything", "customer"),
        ("/v1/customers", [], "customer"),
        ("/v1/customers", {"id": 5}, "customer.id"),
        ("/v1/usage-events/batch", {"events": ["x"]}, "events[0]"),
        ("/v1/usage-events/batch", {"events": [{"timestamp": "2026-11-01"}]}, "events[0].timestamp"),
        ("/v1/usage-events/batch", {"events": [{"properties": "region=eu"}]}, "events[0].properties"),
    ],
)
def test_bodies_of_the_wrong_json_type_are_400_naming_the_field(
    http: httpx.Client, path: str, body: Any, parameter: str
) -> None:
    before = ok(http.get("/v1/customers", params={"limit": 100}))["data"]
    answer = status(http.post(path, json=body), 400, 3)
    assert violations(answer) == [parameter]
    assert answer["message"].startswith(f"invalid value for body field {parameter}: expected") or (
        "RFC 3339" in answer["message"]
    )
    assert "object is not" not in answer["message"] and "bytes-like" not in answer["message"]
    assert ok(http.get("/v1/customers", params={"limit": 100}))["data"] == before  # nothing created


def test_request_ids_go_through_both_ways(http: httpx.Client, stack: Stack) -> None:
    listed = http.get("/v1/usage-events", headers={"x-request-id": "http-req-1"})
    assert listed.status_code == 200
    assert listed.headers["x-request-id"] == listed.headers["grpc-metadata-x-request-id"] == "http-req-1"
    missing = http.get("/v1/customers/nobody", headers={"x-request-id": "http-req-2"})
    status(missing, 404, 5)
    assert missing.headers["x-request-id"] == "http-req-2"
    generated = http.get("/v1/usage-events")
    assert len(generated.headers["x-request-id"]) >= 16  # the service made one up and said which
    logged = [
        json.loads(line)
        for line in stack.processes[0].stderr_path.read_text().splitlines()
        if line.startswith("{")
    ]
    assert {"http-req-1", "http-req-2"} <= {r.get("request_id") for r in logged}


def test_a_huge_grpc_timeout_is_a_long_deadline_not_an_expired_one(http: httpx.Client) -> None:
    assert http.get("/v1/usage-events", headers={"grpc-timeout": "99999999H"}).status_code == 200


def test_absolute_form_request_targets_are_routed(stack: Stack) -> None:
    host, port = stack.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(
            f"GET {stack.url}/v1/usage-events?limit=1 HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {token(ORG)}\r\nConnection: close\r\n\r\n".encode()
        )
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]


# ---- errors and parameters ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"take": "ten"}, "take"),
        ({"skip": "1e3"}, "skip"),
        ({"start_date": "2026-01-01"}, "start_date"),
        ({"endDate": "tomorrow"}, "endDate"),
        ({"take": "99999999999"}, "take"),
    ],
)
def test_malformed_query_values_are_400_naming_the_parameter(
    http: httpx.Client, seeded: list[str], params: dict[str, str], parameter: str
) -> None:
    query = {**WINDOW, **params}
    body = status(http.get("/v1/customers/cus_1/usage/agg_api/events", params=query), 400, 3)
    assert body["message"].startswith(f"invalid value for query parameter {parameter}: ")
    assert violations(body) == [parameter]


def test_the_service_validation_errors_come_through(http: httpx.Client, seeded: list[str]) -> None:
    body = status(
        http.get("/v1/customers/cus_1/usage/agg_api/events", params={**WINDOW, "take": 500}), 400, 3
    )
    assert "take" in violations(body) and body["details"][0]["domain"] == "usage.v1"
    missing = status(http.get("/v1/usage-events/aggregate", params={"bucket": "day"}), 400, 3)
    assert "since" in violations(missing)
    bad_json = status(http.post("/v1/usage-events/batch", content=b'{"events": [}'), 400, 3)
    assert violations(bad_json) == ["body"]
    bad_timeout = status(http.get("/v1/usage-events", headers={"grpc-timeout": "soon"}), 400, 3)
    assert violations(bad_timeout) == ["grpc-timeout"]


def test_unauthenticated_is_401_with_www_authenticate(stack: Stack) -> None:
    with stack.client(org=None) as anonymous:
        missing = anonymous.get("/v1/usage-events")
        status(missing, 401, 16)
        assert missing.headers["www-authenticate"] == 'Bearer realm="usage-service"'
    with stack.client(org=None, authorization="Bearer not-a-jwt") as bad:
        invalid = bad.get("/v1/customers")
        status(invalid, 401, 16)
        assert invalid.headers["www-authenticate"].endswith('error="invalid_token"')


def test_organizations_are_apart(stack: Stack, seeded: list[str]) -> None:
    with stack.client("org_other") as other:
        assert ok(other.get("/v1/usage-events"))["data"] == []
        status(other.get("/v1/customers/cus_1/usage/agg_api/events", params=WINDOW), 404, 5)


def test_void_amend_and_history_routes(stack: Stack) -> None:
    # An organization of its own: the voided event must not change the other tests' events.
    with stack.client("org_gw_void") as http:
        results = ok(http.post("/v1/usage-events/batch", json={"events": EVENTS[:2]}))["results"]
        first, second = (r["event_id"] for r in results)
        voided = ok(
            http.post("/v1/usage-events/void", json={"event_ids": [first, "evt_x"], "reason": "duplicate"})
        )
        assert [(r["event_id"], r["status"]) for r in voided["results"]] == [
            (first, "VOIDED"),
            ("evt_x", "NOT_FOUND"),
        ]
        record = voided["results"][0]["void"]
        assert (record["corrected_by"], record["reason"]) == ("org_gw_void", "duplicate")
        assert "void" not in voided["results"][1]
        assert [e["id"] for e in ok(http.get("/v1/usage-events"))["data"]] == [second]
        (version,) = ok(http.get(f"/v1/usage-events/{first}/history"))["versions"]
        assert version["event"]["id"] == first and version["event"]["properties"] == EVENTS[0]["properties"]
        assert version["voided"] == record
        status(http.get("/v1/usage-events/evt_x/history"), 404, 5)
        body = status(http.post("/v1/usage-events/void", json={"event_ids": [second], "reason": ""}), 400, 3)
        assert violations(body) == ["reason"]
        amended = ok(
            http.post(
                f"/v1/usage-events/{second}/amend",
                json={"event": {"quantity": "2.50"}, "update_mask": "quantity", "reason": "wrong quantity"},
            )
        )
        assert (amended["replaced_version_id"], amended["event"]["quantity"]) == (second, "2.5")
        new = amended["event"]["id"]
        assert [e["id"] for e in ok(http.get("/v1/usage-events"))["data"]] == [new]
        old, current = ok(http.get(f"/v1/usage-events/{second}/history"))["versions"]
        assert (old["replaced_by"], old["voided"]["reason"], current["event"]["id"]) == (
            new,
            "wrong quantity",
            new,
        )
        stale = {"update_mask": "quantity", "reason": "again", "expected_version_id": second}
        body = status(http.post(f"/v1/usage-events/{second}/amend", json=stale), 400, 9)
        assert body["details"][0]["metadata"] == {"current_version_id": new}


def test_routing_errors(http: httpx.Client) -> None:
    status(http.get("/v1/nothing"), 404, 5)
    not_allowed = http.put("/v1/aggregators/agg_api")
    status(not_allowed, 405, 12)
    assert not_allowed.headers["allow"] == "DELETE, GET, PATCH"


def test_deadline_from_grpc_timeout_is_504(stack: Stack, data_dir: pathlib.Path) -> None:
    # Another writer holds SQLite's write lock, so the ingest cannot finish within its 300 ms.
    holder = sqlite3.connect(data_dir / "usage.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with stack.client("org_deadline", **{"grpc-timeout": "300m"}) as http:
            started = time.monotonic()
            response = http.post("/v1/usage-events/batch", json={"events": EVENTS[:1]})
            waited = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    body = status(response, 504, 4)
    # Two deadlines race: the server's wait for the write lock ends at the deadline and says so
    # (storage/dialects/sqlite.py), the gateway's gRPC call ends there too with the generic message.
    assert body["message"] in {"the query did not finish before the deadline", "deadline exceeded"}
    assert waited < 10, "the gateway waited for the lock instead of the deadline"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_gateway_process_answers_503_without_leaking_transport_text(tmp_path: pathlib.Path) -> None:
    with start_gateway(f"127.0.0.1:{_closed_port()}", tmp_path / "gw.log") as gateway:
        with httpx.Client(base_url=gateway.url, timeout=60) as http:
            response = http.get("/v1/usage-events", headers={"authorization": f"Bearer {token(ORG)}"})
            body = status(response, 503, 14)
            assert body == {"code": 14, "message": "the service is unavailable", "details": []}
        assert gateway.terminate() == 0
        assert "usage-service gateway stopped" in gateway.rest_of_stdout()


def test_openapi_json_is_the_document_of_the_routes(http: httpx.Client) -> None:
    assert ok(http.get("/openapi.json")) == openapi.build_document(routes.build_routes(SERVICES))
