"""The gateway's pure parts: the 17-code status table and error body, route templates and matching
from the real descriptors, and the transcoding of query parameters, path variables and bodies."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2
from usage.v1 import usage_service_pb2 as pb

from server.errors import GRPC_TO_HTTP
from server.gateway import errors, openapi, routes, transcode
from server.gateway.app import SERVICES, forwarded_metadata, parse_timeout

# grpc-gateway runtime/errors.go HTTPStatusFromCode, written out again on purpose.
GRPC_GATEWAY_TABLE = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
}
ROUTES = routes.build_routes(SERVICES)


def test_the_table_has_all_17_codes() -> None:
    assert len(grpc.StatusCode) == 17 == len(GRPC_TO_HTTP)


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda c: c.name)
def test_status_table_and_error_body(code: grpc.StatusCode) -> None:
    assert errors.http_status(code) == GRPC_GATEWAY_TABLE[code.name]
    response = errors.error_response(code, "a message", errors.bad_request("take", "too big"))
    assert response.status_code == GRPC_GATEWAY_TABLE[code.name]
    body = json.loads(bytes(response.body))
    assert body["code"] == code.value[0] and body["message"] == "a message"
    types = [d["@type"] for d in body["details"]]
    assert types == ["type.googleapis.com/google.rpc.ErrorInfo", "type.googleapis.com/google.rpc.BadRequest"]
    assert body["details"][1]["field_violations"][0]["field"] == "take"
    challenge = response.headers.get("www-authenticate")
    assert (challenge is not None) == (code == grpc.StatusCode.UNAUTHENTICATED)


def test_www_authenticate_says_invalid_token_only_when_one_was_sent() -> None:
    sent = errors.error_response(grpc.StatusCode.UNAUTHENTICATED, "bad", had_credentials=True)
    none = errors.error_response(grpc.StatusCode.UNAUTHENTICATED, "missing")
    assert sent.headers["www-authenticate"] == 'Bearer realm="usage-service", error="invalid_token"'
    assert none.headers["www-authenticate"] == 'Bearer realm="usage-service"'


# ---- routes --------------------------------------------------------------------------------
def test_every_rpc_has_a_route_from_its_annotation() -> None:
    names = {r.grpc_path for r in ROUTES}
    expected = {f"/{s.full_name}/{m.name}" for s in SERVICES for m in s.methods}
    assert names == expected and len(ROUTES) == 23


@pytest.mark.parametrize(
    ("method", "path", "rpc", "bound"),
    [
        ("GET", "/v1/usage-events", "ListUsageEvents", {}),
        ("GET", "/v1/usage-events/aggregate", "AggregateUsage", {}),
        ("POST", "/v1/usage-events/batch", "IngestUsageEvents", {}),
        (
            "GET",
            "/v1/customers/c%2F1/usage/a:1/events",
            "ListCustomerUsageEvents",
            {"id": "c/1", "aggregator_id": "a:1"},
        ),
        ("PATCH", "/v1/aggregators/agg_1", "UpdateAggregator", {"aggregator.id": "agg_1"}),
        (
            "POST",
            "/v1/aggregators/a/filters",
            "CreateAggregatorFilter",
            {"aggregator_filter.aggregator_id": "a"},
        ),
        (
            "DELETE",
            "/v1/aggregators/a/filters/f",
            "DeleteAggregatorFilter",
            {"aggregator_id": "a", "id": "f"},
        ),
    ],
)
def test_match(method: str, path: str, rpc: str, bound: dict[str, str]) -> None:
    found = routes.match(ROUTES, method, path)
    assert not isinstance(found, list)
    assert (found[0].method.name, found[1]) == (rpc, bound)


def test_literal_segments_beat_variables() -> None:
    extra = routes.Route(
        "GET",
        "/v1/usage-events/{id}",
        *routes.parse_template("/v1/usage-events/{id}"),
        "",
        ROUTES[0].service,
        ROUTES[0].method,
    )
    table = sorted([extra, *ROUTES], key=lambda r: r.precedence)
    found = routes.match(table, "GET", "/v1/usage-events/aggregate")
    assert not isinstance(found, list) and found[0].method.name == "AggregateUsage"
    other = routes.match(table, "GET", "/v1/usage-events/evt_1")
    assert not isinstance(other, list) and other[0] is extra and other[1] == {"id": "evt_1"}


def test_no_match_lists_the_allowed_methods() -> None:
    assert routes.match(ROUTES, "PUT", "/v1/aggregators/a") == ["DELETE", "GET", "PATCH"]
    assert routes.match(ROUTES, "GET", "/v1/nothing") == []
    assert routes.match(ROUTES, "GET", "/v1/customers//usage/a/events") == []


@pytest.mark.parametrize(
    ("template", "kinds", "verb"),
    [
        ("/v1/a/{b.c}/d", [0, 0, 1, 0], ""),
        ("/v1/a/{name=*}:cancel", [0, 0, 1], "cancel"),
        ("/v1/*/{rest=**}", [0, 1, 2], ""),
    ],
)
def test_parse_template(template: str, kinds: list[int], verb: str) -> None:
    segments, got_verb = routes.parse_template(template)
    assert [int(s.kind) for s in segments] == kinds and got_verb == verb


@pytest.mark.parametrize("template", ["v1/a", "/v1/{a=b/*}", "/v1/**/x", "/v1//a", "/v1/{a"])
def test_parse_template_refuses_what_it_cannot_route(template: str) -> None:
    with pytest.raises(ValueError):
        routes.parse_template(template)


# ---- transcoding ---------------------------------------------------------------------------
def _route(rpc: str) -> routes.Route:
    return next(r for r in ROUTES if r.method.name == rpc)


def test_query_repeated_comma_camel_case_timestamps_and_unknown() -> None:
    query = [
        ("metric_key", "a,b"),
        ("metricKey", "c"),
        ("customerId", "cus_1"),
        ("occurred_after", "2026-01-01T00:00:00+01:00"),
        ("limit", "+7"),
        ("nope", "x"),
        ("nope.deeper", "y"),
    ]
    request = transcode.build_request(_route("ListUsageEvents"), {}, query, b"")
    assert isinstance(request, pb.ListUsageEventsRequest)
    assert list(request.metric_key) == ["a,b", "c"]  # the comma split is the service's (docs/api.md)
    assert request.customer_id == "cus_1" and request.limit == 7
    assert request.occurred_after.ToJsonString() == "2025-12-31T23:00:00Z"


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("take", "ten", "not an integer"),
        ("take", "2147483648", "out of range (-2147483648 to 2147483647)"),
        ("take", "1.5", "not an integer"),
        ("start_date", "yesterday", ""),
        ("start_date", "2026-02-30T00:00:00Z", ""),
        ("skip", "", "not an integer"),
    ],
)
def test_bad_query_values_name_the_parameter(name: str, value: str, problem: str) -> None:
    with pytest.raises(transcode.BadParameter) as caught:
        transcode.build_request(
            _route("ListCustomerUsageEvents"), {"id": "c", "aggregator_id": "a"}, [(name, value)], b""
        )
    assert caught.value.parameter == name and problem in caught.value.problem
    assert str(caught.value).startswith(f"invalid value for query parameter {name}: ")


def test_a_single_field_given_twice_is_refused() -> None:
    with pytest.raises(transcode.BadParameter, match="expected one value"):
        transcode.build_request(_route("ListUsageEvents"), {}, [("limit", "1"), ("limit", "2")], b"")


def test_path_variables_win_over_body_and_query_ignores_bound_fields() -> None:
    route = _route("UpdateAggregator")
    body = json.dumps({"id": "from_body", "unitName": "calls", "event_type": "api_call"}).encode()
    query = [("update_mask", "unitName,display_name_property"), ("aggregator.name", "ignored")]
    request = transcode.build_request(route, {"aggregator.id": "agg_path"}, query, body)
    assert request.aggregator.id == "agg_path"  # type: ignore[attr-defined]
    assert request.aggregator.unit_name == "calls" and request.aggregator.name == ""  # type: ignore[attr-defined]
    assert list(request.update_mask.paths) == ["unit_name", "display_name_property"]  # type: ignore[attr-defined]


def test_patch_without_mask_updates_the_fields_its_body_names() -> None:
    route = _route("UpdateAggregator")
    body = json.dumps({"unitName": "calls", "display_name_property": "", "unknown": 1}).encode()
    request = transcode.build_request(route, {"aggregator.id": "agg_path"}, [], body)
    assert list(request.update_mask.paths) == ["unit_name", "display_name_property"]  # type: ignore[attr-defined]
    # Not for a method other than PATCH, nor a body of the whole message.
    post = transcode.build_request(_route("CreateAggregator"), {}, [], b'{"name": "n"}')
    assert "update_mask" not in post.DESCRIPTOR.fields_by_name


@pytest.mark.parametrize(
    ("method", "body", "parameter", "problem"),
    [
        ("IngestUsageEvents", b"{", "body", "not valid JSON: expecting property name"),
        ("IngestUsageEvents", b"[1]", "body", "expected a JSON object"),
        ("IngestUsageEvents", b'{"events": 5}', "events", "expected a JSON array"),
        ("IngestUsageEvents", b'{"events": ["x"]}', "events[0]", "expected a JSON object"),
        ("IngestUsageEvents", b'{"events": [null]}', "events[0]", "null is not allowed"),
        ("IngestUsageEvents", b'{"events": [{"timestamp": "soon"}]}', "events[0].timestamp", "RFC 3339"),
        (
            "IngestUsageEvents",
            b'{"events": [{"timestamp": "2026-13-01T00:00:00Z"}]}',
            "events[0].timestamp",
            "RFC 3339",
        ),
        (
            "IngestUsageEvents",
            b'{"events": [{"customerId": 5}]}',
            "events[0].customer_id",
            "expected a string",
        ),
        (
            "IngestUsageEvents",
            b'{"events": [{"properties": []}]}',
            "events[0].properties",
            "expected a JSON object",
        ),
        ("IngestUsageEvents", b"[" * 100000 + b"]" * 100000, "body", ""),
        ("CreateCustomer", b'"anything"', "customer", "expected a JSON object"),
        ("CreateCustomer", b"[]", "customer", "expected a JSON object"),
        ("CreateCustomer", b'{"name": true}', "customer.name", "expected a string"),
        (
            "CreateAggregator",
            b'{"filter": {"fields": [{"operator": 7}]}}',
            "aggregator.filter.fields[0].operator",
            "string",
        ),
        (
            "UpdateAggregator",
            b'{"filter": {"conditional": ["and"]}}',
            "aggregator.filter.conditional",
            "string",
        ),
    ],
)
def test_bad_bodies_name_the_field(method: str, body: bytes, parameter: str, problem: str) -> None:
    with pytest.raises(transcode.BadParameter) as caught:
        transcode.build_request(_route(method), {}, [], body)
    assert caught.value.parameter == parameter and problem in caught.value.problem


@pytest.mark.parametrize(
    "body",
    [
        b'{"events": [{"customer_id": "c", "timestamp": "2026-01-01T00:00:00.123456789+01:00"}]}',
        b'{"events": [{"customer_id": null, "quantity": "1.5", "properties": {"a": [1, "x", true]}}]}',
        b'{"events": []}',
        b"",
    ],
)
def test_good_bodies_pass_the_shape_check(body: bytes) -> None:
    transcode.build_request(_route("IngestUsageEvents"), {}, [], body)


def test_body_accepts_both_spellings_and_ignores_unknown_fields() -> None:
    body = (
        b'{"events":[{"customerId":"c","metric_key":"m","timestamp":"2026-01-01T00:00:00Z","extra":1}],"x":2}'
    )
    request = transcode.build_request(_route("IngestUsageEvents"), {}, [("events", "ignored")], body)
    assert [(e.customer_id, e.metric_key) for e in request.events] == [("c", "m")]  # type: ignore[attr-defined]


def test_output_uses_proto_names_and_prints_defaults() -> None:
    response = pb.ListCustomerUsageEventsResponse(meta=pb.PageMeta(total=0))
    assert json.loads(transcode.to_json(response)) == {
        "meta": {"total": 0, "taken": 0, "skipped": 0},
        "data": [],
    }


def test_timeout_header_and_metadata() -> None:
    assert parse_timeout(None, 30.0) == 30.0
    assert parse_timeout("1500m", 30.0) == 1.5 and parse_timeout("2M", 30.0) == 120.0
    with pytest.raises(transcode.BadParameter, match="grpc-timeout"):
        parse_timeout("10 seconds", 30.0)
    headers = [
        ("Authorization", "Bearer x"),
        ("Grpc-Metadata-Request-Id", "r1"),
        ("Grpc-Metadata-Grpc-Status", "0"),
        ("Grpc-Metadata-Trace-Bin", "AAA"),
        ("Grpc-Metadata-Name", "caf\u00e9"),
        ("Cookie", "c"),
    ]
    assert forwarded_metadata(headers) == [("authorization", "Bearer x"), ("request-id", "r1")]


def test_error_details_render_through_any() -> None:
    body = json.loads(errors.status_body(grpc.StatusCode.INVALID_ARGUMENT, "m", errors.bad_request("a", "b")))
    status = json_format.ParseDict(body, errors.status_pb2.Status())
    bad = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(bad) and bad.field_violations[0].field == "a"


def test_openapi_parameters_come_from_the_request_messages() -> None:
    document = openapi.build_document(ROUTES)
    op = document["paths"]["/v1/customers/{id}/usage/{aggregator_id}/events"]["get"]
    params = {p["name"]: p for p in op["parameters"] if p["in"] != "header"}
    assert [p["in"] for p in op["parameters"][:2]] == ["path", "path"]
    assert op["parameters"][-1] == openapi.TIMEOUT_PARAMETER  # every operation takes the deadline header
    assert set(params) == {
        "id",
        "aggregator_id",
        "start_date",
        "end_date",
        "aggregator_filter_id",
        "take",
        "skip",
        "as_of",
    }
    assert params["as_of"]["schema"] == {"type": "string", "format": "date-time"}
    assert "required" not in params["as_of"]
    assert params["take"]["schema"] == {"type": "integer", "format": "int32", "minimum": 0, "maximum": 100}
    assert params["start_date"]["required"] and params["start_date"]["schema"]["format"] == "date-time"
    listing = document["paths"]["/v1/usage-events"]["get"]
    metric = next(p for p in listing["parameters"] if p["name"] == "metric_key")
    assert metric["schema"]["type"] == "array" and metric["explode"] is True
    patch = document["paths"]["/v1/aggregators/{id}"]["patch"]  # one path with GET and DELETE
    assert [p["name"] for p in patch["parameters"]] == ["id", "update_mask", "grpc-timeout"]
    assert set(document["paths"]["/v1/aggregators/{id}"]) == {"get", "patch", "delete"}
    assert set(document["paths"]["/v1/aggregators/{aggregator_id}/filters"]) == {"get", "post"}
    # A PATCH body requires nothing (it updates the fields it names) and leaves out the id of the path.
    patch_body = patch["requestBody"]["content"]["application/json"]["schema"]
    assert "required" not in patch_body and "id" not in patch_body["properties"]
    assert "unit_name" in patch_body["properties"]
    aggregator = document["components"]["schemas"]["usage.v1.Aggregator"]
    assert {"name", "event_type", "operation"} <= set(aggregator["required"])  # `in` lists lacking ""
    post_filter = document["paths"]["/v1/aggregators/{aggregator_id}/filters"]["post"]
    filter_body = post_filter["requestBody"]["content"]["application/json"]["schema"]
    assert "aggregator_id" not in filter_body["properties"]
    assert "aggregator_id" not in filter_body.get("required", [])
    aggregate = document["paths"]["/v1/usage-events/aggregate"]["get"]
    assert next(p for p in aggregate["parameters"] if p["name"] == "bucket")["required"] is True
    assert len([op for path in document["paths"].values() for op in path]) == 23
    export = document["paths"]["/v1/usage-events:export"]["get"]["responses"]["200"]["content"]
    assert export["application/x-ndjson"]["schema"]["properties"]["result"] == {
        "$ref": "#/components/schemas/usage.v1.ExportUsageEventsResponse"
    }


def test_to_json_writes_integral_doubles_as_integers_like_protojson() -> None:
    from google.protobuf import struct_pb2
    from usage.v1 import usage_service_pb2

    from server.gateway.transcode import to_json

    payload = struct_pb2.Struct()
    payload.update({"status": 200, "ratio": 0.25, "big": 1e20, "tags": [1, 2.5]})
    event = usage_service_pb2.CustomerUsageEvent(id="e", payload=payload)
    point = usage_service_pb2.AggregatePoint(value=209.0)
    assert '"status": 200,' in to_json(event) or '"status": 200}' in to_json(event)
    assert '"ratio": 0.25' in to_json(event)
    assert '"big": 1e+20' in to_json(event)
    assert '"tags": [1, 2.5]' in to_json(event)
    assert '"value": 209' in to_json(point) and "209.0" not in to_json(point)


def test_openapi_words_come_from_the_proto_comments() -> None:
    document = openapi.build_document(ROUTES)
    assert document["servers"] == [{"url": "/", "description": "the gateway that serves this document"}]
    assert [t["name"] for t in document["tags"]] == ["UsageService", "CatalogService", "CorrectionService"]
    assert all(t["description"] for t in document["tags"])
    operations = [op for path in document["paths"].values() for op in path.values()]
    for op in operations:
        rpc = op["operationId"].split("_", 1)[1]
        assert op["summary"] and rpc not in op["summary"] and "/" not in op["summary"], op["summary"]
        assert " ".join(op["description"].split()).startswith(op["summary"]), op["description"]
        for parameter in op["parameters"]:
            assert parameter.get("description"), (rpc, parameter["name"])
    listing = document["paths"]["/v1/usage-events"]["get"]
    assert (
        listing["summary"]
        == "All events of the caller's organization, newest first, filtered, cursor-paginated"
    )
    assert listing["description"].endswith("gRPC: `usage.v1.UsageService/ListUsageEvents`")
    limit = next(p for p in listing["parameters"] if p["name"] == "limit")
    assert limit["description"].startswith("How many events to return: default 25")
    properties = [
        (name, key, schema)
        for name, component in document["components"]["schemas"].items()
        for key, schema in component.get("properties", {}).items()
    ]
    assert len(properties) > 90
    assert [(name, key) for name, key, schema in properties if not schema.get("description")] == []
    assert all(c.get("description") for c in document["components"]["schemas"].values())
    # A message-typed property keeps its $ref (wrapped: OpenAPI 3.0 ignores a $ref's siblings).
    meta = document["components"]["schemas"]["usage.v1.ListCustomerUsageEventsResponse"]["properties"]["meta"]
    assert meta == {
        "allOf": [{"$ref": "#/components/schemas/usage.v1.PageMeta"}],
        "description": "Counts of this page.",
    }
