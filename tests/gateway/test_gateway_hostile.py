"""Hostile HTTP (issue 11, items 3, 4 and 6) against the real `serve --http-port` process: what the
gateway refuses itself, and how, before any call.

- Bodies declared as anything but JSON (text, XML, forms, multipart) are 415: they were parsed as JSON
  and stored. A body over 16 MiB is 413.
- Headers that would pass gRPC's 8 KiB metadata limit (a 16 KiB token, 200 Grpc-Metadata-* headers)
  are 431 naming the header: they were a bare 429, which invites retries.
- Two credentials (Authorization and Grpc-Metadata-Authorization, or two Authorization headers) are
  400: the last one was served.
- A 401-digit integer in a JSON value is 400 naming its field (was an OverflowError, 500); a 1 MiB
  query value is 400 with a clipped echo (was repeated whole, twice, in a 2 MB answer).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import urllib.parse
from typing import Any

import httpx
import pytest
from gateway_process import ORG, Stack, token

from server.gateway.app import MAX_BODY_BYTES, MAX_METADATA_BYTES

pytestmark = pytest.mark.e2e

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
EVENT = {
    "customer_id": "cus_h",
    "metric_key": "api_call",
    "timestamp": NOW.isoformat().replace("+00:00", "Z"),
}
BATCH = json.dumps({"events": [EVENT]})
JSON = {"content-type": "application/json"}


def error(response: httpx.Response, http_status: int, reason: str) -> dict[str, Any]:
    assert response.status_code == http_status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details"} and body["code"] == 3, body  # INVALID_ARGUMENT
    assert body["details"][0]["reason"] == reason, body
    return body


def fields(body: dict[str, Any]) -> list[str]:
    return [v["field"] for d in body["details"] for v in d.get("field_violations", [])]


def stored_events(http: httpx.Client) -> int:
    response = http.get("/v1/usage-events", params={"limit": 100, "customer_id": "cus_h"})
    assert response.status_code == 200, response.text
    return len(response.json()["data"])


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/xml",
        "text/xml; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/json; charset=iso-8859-1",
    ],
)
def test_bodies_not_declared_as_json_are_415(stack: Stack, content_type: str) -> None:
    with stack.client() as http:
        before = stored_events(http)
        response = http.post("/v1/usage-events/batch", content=BATCH, headers={"content-type": content_type})
        body = error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
        assert fields(body) == ["content-type"] and "application/json" in body["message"]
        assert stored_events(http) == before


def test_json_content_types_are_read(stack: Stack) -> None:
    with stack.client() as http:
        for content_type in (
            "application/json",
            "application/json; charset=UTF-8",
            "application/merge-patch+json",
        ):
            response = http.post(
                "/v1/usage-events/batch", content=BATCH, headers={"content-type": content_type}
            )
            assert response.status_code == 200, response.text


def test_a_body_over_the_limit_is_413(stack: Stack) -> None:
    with stack.client() as http:
        before = stored_events(http)
        big = b'{"events": [], "padding": "' + b"x" * MAX_BODY_BYTES + b'"}'
        body = error(
            http.post("/v1/usage-events/batch", content=big, headers=JSON),
            413,
            "REQUEST_TOO_LARGE",
        )
        assert fields(body) == ["body"] and str(MAX_BODY_BYTES) in body["message"]
        assert stored_events(http) == before


def test_a_huge_token_is_431_naming_the_header(stack: Stack) -> None:
    huge = "Bearer " + "a" * 16 * 1024
    with stack.client(None, authorization=huge) as http:
        body = error(http.get("/v1/usage-events"), 431, "HEADERS_TOO_LARGE")
    assert fields(body) == ["authorization"]
    assert len(body["message"]) <= 512 and "a" * 300 not in str(body)


def test_many_metadata_headers_are_431(stack: Stack) -> None:
    headers = {f"Grpc-Metadata-X-H{i}": "v" * 10 for i in range(200)}
    with stack.client(**headers) as http:
        body = error(http.get("/v1/usage-events"), 431, "HEADERS_TOO_LARGE")
    assert fields(body) == ["grpc-metadata-*"] and "201 headers" in body["message"]


def test_headers_just_within_the_limit_reach_the_service(stack: Stack) -> None:
    """The bound is below gRPC's own: what passes it is never refused by the transport."""
    good = token(ORG)
    room = MAX_METADATA_BYTES - len("authorization") - len(f"Bearer {good}") - 2 * 32 - len("x-pad")
    with stack.client(None, authorization=f"Bearer {good}", **{"Grpc-Metadata-X-Pad": "p" * room}) as http:
        assert http.get("/v1/usage-events", params={"limit": 1}).status_code == 200
    with stack.client(
        None, authorization=f"Bearer {good}", **{"Grpc-Metadata-X-Pad": "p" * (room + 1)}
    ) as http:
        error(http.get("/v1/usage-events", params={"limit": 1}), 431, "HEADERS_TOO_LARGE")


def test_two_credentials_are_400(stack: Stack) -> None:
    mine, theirs = token(ORG), token("org_other")
    cases = [
        [("authorization", f"Bearer {mine}"), ("grpc-metadata-authorization", f"Bearer {theirs}")],
        [("authorization", f"Bearer {mine}"), ("authorization", f"Bearer {theirs}")],
        [("authorization", f"Bearer {mine}"), ("authorization", f"Bearer {mine}")],
    ]
    for headers in cases:
        response = httpx.get(f"{stack.url}/v1/usage-events", headers=headers, timeout=60)
        body = error(response, 400, "CREDENTIALS_AMBIGUOUS")
        assert "2 authorization headers" in body["message"]


def test_integers_beyond_a_double_are_400_naming_the_field(stack: Stack) -> None:
    def with_huge_number(document: dict[str, Any]) -> str:
        return json.dumps(document).replace("7777", "9" * 401)  # json cannot write such a number itself

    event = {**EVENT, "properties": {"n": 7777}}
    aggregator = {
        "name": "n",
        "event_type": "e",
        "operation": "count",
        "filter": {"fields": [{"property": "p", "operator": "in", "value": [1, 7777]}]},
    }
    with stack.client() as http:
        before = stored_events(http)
        response = http.post(
            "/v1/usage-events/batch", content=with_huge_number({"events": [event]}), headers=JSON
        )
        assert fields(error(response, 400, "INVALID_ARGUMENT")) == ["events[0].properties.n"]
        response = http.post("/v1/aggregators", content=with_huge_number(aggregator), headers=JSON)
        assert fields(error(response, 400, "INVALID_ARGUMENT")) == ["aggregator.filter.fields[0].value[1]"]
        assert stored_events(http) == before


def test_a_huge_query_value_is_echoed_clipped(stack: Stack) -> None:
    # http.client: httpx refuses URLs this long on the client side.
    host, port = urllib.parse.urlsplit(stack.url).netloc.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request(
            "GET",
            "/v1/usage-events?limit=" + "9" * (1 << 20),
            headers={"authorization": f"Bearer {token(ORG)}"},
        )
        response = conn.getresponse()
        content = response.read()
    finally:
        conn.close()
    assert response.status == 400 and len(content) < 2048, (response.status, len(content))
    assert fields(json.loads(content)) == ["limit"]


def test_a_body_over_its_rpcs_bound_is_413_too(stack: Stack) -> None:
    """The service refuses a CreateAggregator of 2 MB before parsing it (its bound: 1 MiB); the gateway
    answers that with the error table's status for the reason, 413."""
    aggregator = {
        "name": "n",
        "event_type": "e",
        "operation": "count",
        "filter": {
            "fields": [{"property": f"p{i}", "operator": "equals", "value": "x" * 4000} for i in range(50)]
        },
    }
    big = json.dumps({**aggregator, "unit_name": "u" * (2 << 20)})
    with stack.client() as http:
        body = error(http.post("/v1/aggregators", content=big, headers=JSON), 413, "REQUEST_TOO_LARGE")
    assert "over its limit of 1,048,576" in body["message"]
