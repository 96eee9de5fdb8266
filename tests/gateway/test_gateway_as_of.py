"""`as_of` over real HTTP (issue 16): an RFC 3339 query parameter on every GET route of the query
RPCs, and a field of each JSON answer (`as_of`, the proto name, as for `occurred_after`). An answer's
`as_of` passed back gives the same answer after more events were ingested and one was voided; a
cursor keeps its walk's `as_of`; a future `as_of`, one before the floor and one that disagrees with
the cursor are 400 INVALID_ARGUMENT naming the field; /openapi.json describes the parameter and the
response field with the proto comments."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import pytest
from gateway_process import Stack

from server import contract

pytestmark = pytest.mark.e2e

ORG = "org_gw_as_of"
WINDOW = {"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-02-01T00:00:00Z"}
# The GET route of each query RPC, with the parameters it needs (the aggregator and event of `seeded`).
ROUTES = {
    "ListCustomerUsageEvents": ("/v1/customers/cus_1/usage/agg_calls/events", WINDOW),
    "ListUsageEvents": ("/v1/usage-events", {"limit": "100"}),
    "ExportUsageEvents": ("/v1/usage-events:export", {"order": "oldest_first"}),
    "ExplainUsageEvent": ("/v1/usage-events/{event}/explain/agg_calls", {}),
    "AggregateUsage": (
        "/v1/usage-events/aggregate",
        {"bucket": "day", "since": WINDOW["start_date"], "until": WINDOW["end_date"]},
    ),
    "GetCustomerUsage": ("/v1/customers/cus_1/usage", WINDOW),
    "GetAggregatorTimeSeries": ("/v1/aggregators/agg_calls/usage/timeseries", {**WINDOW, "bucket": "day"}),
    "ListAggregatorUsageByCustomer": ("/v1/aggregators/agg_calls/usage/customers", WINDOW),
}


def _event(customer: str, hour: int) -> dict[str, Any]:
    return {"customer_id": customer, "metric_key": "api_call", "timestamp": f"2026-01-10T{hour:02d}:00:00Z"}


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def ingest(http: httpx.Client, *events: dict[str, Any]) -> list[str]:
    results = ok(http.post("/v1/usage-events/batch", json={"events": list(events)}))["results"]
    assert [r["status"] for r in results] == ["ACCEPTED"] * len(events), results
    return [r["event_id"] for r in results]


def invalid_as_of(response: httpx.Response) -> str:
    """The message of a 400 INVALID_ARGUMENT whose only violation is `as_of`."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == 3, body
    fields = [v["field"] for d in body["details"] for v in d.get("field_violations", [])]
    assert fields == ["as_of"], body
    return str(body["message"])


def get(http: httpx.Client, rpc: str, event: str, **params: str) -> list[dict[str, Any]]:
    """The JSON answers of one GET route (the chunks of an export: one per ndjson line)."""
    path, base = ROUTES[rpc]
    response = http.get(path.format(event=event), params={**base, **params})
    if rpc != "ExportUsageEvents":
        return [ok(response)]
    assert response.status_code == 200, response.text
    return [json.loads(line)["result"] for line in response.iter_lines() if line]


def _without_as_of(answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The answers without what says when they were read (`as_of`, and cursors, which carry it)."""
    return [{k: v for k, v in a.items() if k not in ("as_of", "pagination", "resume_token")} for a in answers]


def parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def http(stack: Stack) -> Any:
    with stack.client(ORG) as client:
        yield client


@pytest.fixture(scope="module")
def seeded(http: httpx.Client) -> list[str]:
    """Three events of cus_1 (10:00, 11:00, 12:00) and an aggregator counting them."""
    ids = ingest(http, *(_event("cus_1", h) for h in (10, 11, 12)))
    aggregator = {"id": "agg_calls", "name": "Calls", "event_type": "api_call", "operation": "count"}
    ok(http.post("/v1/aggregators", json=aggregator))
    return ids


def test_a_page_read_again_with_its_as_of_is_the_same_page(http: httpx.Client, seeded: list[str]) -> None:
    first = ok(http.get("/v1/usage-events", params={"limit": 2}))
    as_of = first["as_of"]
    assert [e["id"] for e in first["data"]] == [seeded[2], seeded[1]]
    assert parse(as_of) <= dt.datetime.now(dt.UTC)
    # Later: a newer event of cus_1, and one of the page's events voided.
    (newer,) = ingest(http, _event("cus_1", 13))
    voided = ok(http.post("/v1/usage-events/void", json={"event_ids": [seeded[2]], "reason": "test"}))
    assert [r["status"] for r in voided["results"]] == ["VOIDED"]
    now = ok(http.get("/v1/usage-events", params={"limit": 2}))
    assert [e["id"] for e in now["data"]] == [newer, seeded[1]] and now["as_of"] > as_of
    again = ok(http.get("/v1/usage-events", params={"limit": 2, "as_of": as_of}))
    assert again == first  # the same events, the same cursor, the same as_of
    # The lowerCamelCase spelling of the parameter sets the same field.
    assert ok(http.get("/v1/usage-events", params={"limit": 2, "asOf": as_of})) == first
    # The cursor of the first page keeps its walk's as_of: the next page is as of it too.
    cursor = first["pagination"]["cursor"]
    second = ok(http.get("/v1/usage-events", params={"limit": 2, "cursor": cursor}))
    assert [e["id"] for e in second["data"]] == [seeded[0]] and second["as_of"] == as_of
    # Passing the cursor with another as_of is refused.
    other = now["as_of"]
    invalid_as_of(http.get("/v1/usage-events", params={"limit": 2, "cursor": cursor, "as_of": other}))


@pytest.mark.parametrize("rpc", list(ROUTES))
def test_every_query_route_takes_as_of_and_answers_with_it(
    http: httpx.Client, seeded: list[str], rpc: str
) -> None:
    answers = get(http, rpc, seeded[0])
    assert answers and all(parse(a["as_of"]) <= dt.datetime.now(dt.UTC) for a in answers), answers
    as_of = answers[0]["as_of"]
    (later,) = ingest(http, _event("cus_1", 9))  # counts for every route's question, but after as_of
    again = get(http, rpc, seeded[0], as_of=as_of)
    assert again == answers
    current = get(http, rpc, seeded[0])
    assert all(a["as_of"] > as_of for a in current), current
    if rpc == "ExplainUsageEvent":  # the later event is explained now, and unknown as of before it
        assert get(http, rpc, later)[0]["event"]["id"] == later
        path, base = ROUTES[rpc]
        unknown = http.get(path.format(event=later), params={**base, "as_of": as_of})
        assert unknown.status_code == 404, unknown.text
    else:  # the later event counts now, not as of before it
        assert _without_as_of(current) != _without_as_of(answers)


def test_an_explanation_read_again_with_its_as_of_is_the_same_word_for_word(
    http: httpx.Client, seeded: list[str]
) -> None:
    path = f"/v1/usage-events/{seeded[1]}/explain/agg_calls"
    answer = ok(http.get(path))
    assert ok(http.get(path, params={"as_of": answer["as_of"]})) == answer


def test_an_aggregate_without_until_is_given_again_by_its_as_of_and_its_until(
    http: httpx.Client, seeded: list[str]
) -> None:
    """Without `until` the window ends at now; as of a moment it ends at that moment, as it would have
    then (docs/api.md): the answer's own until goes with its as_of to give it again."""
    params = {"bucket": "day", "since": "2026-01-01T00:00:00Z"}
    answer = ok(http.get("/v1/usage-events/aggregate", params=params))
    ingest(http, _event("cus_1", 8))
    at_as_of = ok(http.get("/v1/usage-events/aggregate", params={**params, "as_of": answer["as_of"]}))
    assert at_as_of["until"] == answer["as_of"] < answer["until"]
    again = {**params, "until": answer["until"], "as_of": answer["as_of"]}
    assert ok(http.get("/v1/usage-events/aggregate", params=again)) == answer


@pytest.mark.parametrize("rpc", list(ROUTES))
def test_an_as_of_in_the_future_or_before_the_floor_is_400_on_as_of(
    http: httpx.Client, seeded: list[str], rpc: str
) -> None:
    path, base = ROUTES[rpc]
    path = path.format(event=seeded[0])
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    assert "must be before now" in invalid_as_of(http.get(path, params={**base, "as_of": future}))
    floor = invalid_as_of(http.get(path, params={**base, "as_of": "1970-01-01T00:00:00Z"}))
    assert "must be at or after" in floor and "when this service began recording" in floor
    # Not a time at all: the gateway's own parsing names the parameter.
    response = http.get(path, params={**base, "as_of": "yesterday"})
    assert response.status_code == 400 and "as_of" in response.json()["message"], response.text


def test_openapi_describes_as_of_with_the_proto_comments(stack: Stack) -> None:
    with stack.client(None) as anonymous:
        document = ok(anonymous.get("/openapi.json"))
    comments = contract.comments()
    schemas = document["components"]["schemas"]
    operations = {
        op["operationId"].split("_", 1)[1]: op for path in document["paths"].values() for op in path.values()
    }
    for rpc in ROUTES:
        (parameter,) = [p for p in operations[rpc]["parameters"] if p["name"] == "as_of"]
        assert parameter["in"] == "query" and not parameter.get("required"), parameter
        assert parameter["schema"] == {"type": "string", "format": "date-time"}, parameter
        assert parameter["description"] == comments[f"usage.v1.{rpc}Request.as_of"]
        assert parameter["description"].startswith("Answer as of this moment")
        response = schemas[f"usage.v1.{rpc}Response"]["properties"]["as_of"]
        assert response["description"] == comments[f"usage.v1.{rpc}Response.as_of"]
        assert response["description"].startswith("The moment this answer is as of")
