"""The real grpcurl binary against a running server: list, describe every service, method, message and
field of usage.v1 with its doc comment (through server reflection), a call of every RPC with a bearer
token, and an error whose google.rpc details grpcurl prints. (test_readme.py runs the README's own
commands as written.)"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from google.protobuf import descriptor_pb2
from grpc_harness import Harness
from usage.v1 import (
    catalog_pb2,
    catalog_service_pb2,
    corrections_service_pb2,
    events_pb2,
    pagination_pb2,
    usage_service_pb2,
)

from server import contract

FILES = (
    usage_service_pb2,
    catalog_service_pb2,
    corrections_service_pb2,
    events_pb2,
    catalog_pb2,
    pagination_pb2,
)
SERVICES = ("usage.v1.UsageService", "usage.v1.CatalogService", "usage.v1.CorrectionService")


def run(grpcurl: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([grpcurl, *args], capture_output=True, text=True, timeout=60)


class Grpcurl:
    def __init__(self, binary: str, harness: Harness, token: str) -> None:
        self.binary = binary
        self.address = harness.address
        self.header = f"authorization: Bearer {token}"

    def call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        result = run(
            self.binary, "-plaintext", "-H", self.header, "-d", json.dumps(body), self.address, method
        )
        assert result.returncode == 0, f"{method}: {result.stderr}"
        return json.loads(result.stdout)


def test_list_names_the_services_health_and_reflection(grpcurl: str, harness: Harness) -> None:
    result = run(grpcurl, "-plaintext", harness.address, "list")
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) >= {
        *SERVICES,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }


def assert_commented(output: str, full_name: str) -> None:
    """grpcurl printed the element's doc comment, each line as `// ...`."""
    comment = contract.comments()[full_name]
    for line in comment.splitlines():
        assert f"// {line}".rstrip() in output, (full_name, line, output[:2000])


def test_describe_every_service_method_message_and_field_with_its_comment(
    grpcurl: str, harness: Harness
) -> None:
    services = [s for f in FILES for s in f.DESCRIPTOR.services_by_name.values()]
    assert {s.full_name for s in services} == set(SERVICES)
    for service in services:
        result = run(grpcurl, "-plaintext", harness.address, "describe", service.full_name)
        assert result.returncode == 0, result.stderr
        assert f"{service.full_name} is a service:" in result.stdout
        assert_commented(result.stdout, service.full_name)
        for method in service.methods:
            assert f"rpc {method.name} ( .{method.input_type.full_name} )" in result.stdout
            assert_commented(result.stdout, method.full_name)
        method = service.methods[0]
        alone = run(grpcurl, "-plaintext", harness.address, "describe", method.full_name)
        assert alone.returncode == 0, alone.stderr
        assert f"{method.full_name} is a method:" in alone.stdout
        assert_commented(alone.stdout, method.full_name)
    messages = [m for f in FILES for m in f.DESCRIPTOR.message_types_by_name.values()]
    assert len(messages) > 30
    for message in messages:
        result = run(grpcurl, "-plaintext", harness.address, "describe", message.full_name)
        assert result.returncode == 0, result.stderr
        assert f"{message.full_name} is a message:" in result.stdout
        assert_commented(result.stdout, message.full_name)
        for field in message.fields:
            assert f" {field.name} = {field.number}" in result.stdout, (message.full_name, field.name)
            assert_commented(result.stdout, field.full_name)


def test_describe_a_field_shows_its_comment(grpcurl: str, harness: Harness) -> None:
    result = run(grpcurl, "-plaintext", harness.address, "describe", "usage.v1.ListUsageEventsRequest.limit")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage.v1.ListUsageEventsRequest.limit is a field:\n// How many events")
    assert "values above 100 are lowered to 100" in result.stdout


def test_the_documented_descriptors_are_the_generated_ones_plus_comments() -> None:
    # Reflection serves the descriptor set's copy of each contract file: it must be the very file the
    # stubs were generated from (scripts/gen_protos.py writes both; CI checks both for drift).
    documented = contract.documented_files()
    assert set(documented) == {f.DESCRIPTOR.name for f in FILES}
    for module in FILES:
        generated = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(generated)
        with_comments = descriptor_pb2.FileDescriptorProto()
        with_comments.CopyFrom(documented[module.DESCRIPTOR.name])
        assert len(with_comments.source_code_info.location) > 10
        with_comments.ClearField("source_code_info")
        assert with_comments == generated, module.DESCRIPTOR.name


def test_every_rpc_with_a_token(grpcurl: str, harness: Harness) -> None:
    g = Grpcurl(grpcurl, harness, harness.token("org_grpcurl"))
    u, c = "usage.v1.UsageService/", "usage.v1.CatalogService/"
    event = {
        "customer_id": "cus_001",
        "metric_key": "api_call",
        "timestamp": "2026-01-10T10:00:00Z",
        "idempotency_key": "req-42",
        "properties": {"region": "eu-west", "endpoint": "/v1/search"},
    }
    first = g.call(u + "IngestUsageEvents", {"events": [event]})
    (result,) = first["results"]
    assert result["status"] == "ACCEPTED"
    again = g.call(u + "IngestUsageEvents", {"events": [event]})
    # proto3 JSON omits defaults: index 0 is not printed.
    assert again["results"][0] == {"status": "DUPLICATE", "event_id": result["event_id"]}

    events = g.call(u + "ListUsageEvents", {"limit": 25, "metric_key": ["api_call,storage_gb"]})
    assert [e["id"] for e in events["data"]] == [result["event_id"]]
    assert events["data"][0]["organization_id"] == "org_grpcurl"
    assert events["pagination"] == {}  # proto3 JSON omits the empty cursor and has_more=false

    aggregator = {
        "id": "agg_search",
        "name": "Searches",
        "event_type": "api_call",
        "operation": "count",
        "display_name_property": "endpoint",
        "filter": {
            "conditional": "and",
            "fields": [{"property": "endpoint", "operator": "equals", "value": "/v1/search"}],
        },
    }
    assert g.call(c + "CreateAggregator", {"aggregator": aggregator})["aggregator"]["id"] == "agg_search"
    page = g.call(
        u + "ListCustomerUsageEvents",
        {
            "id": "cus_001",
            "aggregator_id": "agg_search",
            "start_date": "2026-01-01T00:00:00Z",
            "end_date": "2026-02-01T00:00:00Z",
            "take": 10,
        },
    )
    assert page["meta"] == {"total": 1, "taken": 1}  # skipped=0 is omitted
    assert page["data"][0]["name"] == "/v1/search"
    agg = g.call(
        u + "AggregateUsage",
        {"bucket": "day", "since": "2026-01-10T00:00:00Z", "until": "2026-01-11T00:00:00Z"},
    )
    assert [(s.get("key", ""), s["total"]) for s in agg["series"]] == [("", 1)]  # group_by none: key ""

    created = g.call(c + "CreateCustomer", {"customer": {"id": "cus_new", "name": "New Co"}})
    assert created["customer"]["id"] == "cus_new"
    assert g.call(c + "GetCustomer", {"id": "cus_new"})["customer"]["name"] == "New Co"
    listed = g.call(c + "ListCustomers", {"limit": 10})
    assert {x["id"] for x in listed["data"]} == {"cus_001", "cus_new"}
    assert g.call(c + "GetAggregator", {"id": "agg_search"})["aggregator"]["operation"] == "count"
    assert [a["id"] for a in g.call(c + "ListAggregators", {})["data"]] == ["agg_search"]
    updated = g.call(
        c + "UpdateAggregator",
        {
            "aggregator": {"id": "agg_search", "unit_name": "searches"},
            "update_mask": {"paths": ["unit_name"]},
        },
    )
    assert updated["aggregator"]["unit_name"] == "searches"
    flt = g.call(
        c + "CreateAggregatorFilter",
        {
            "aggregator_filter": {
                "id": "flt_eu",
                "aggregator_id": "agg_search",
                "name": "EU only",
                "filter": {"fields": [{"property": "region", "operator": "in", "value": ["eu-west"]}]},
            }
        },
    )
    assert flt["aggregator_filter"]["id"] == "flt_eu"
    filters = g.call(c + "ListAggregatorFilters", {"aggregator_id": "agg_search"})
    assert [f["id"] for f in filters["data"]] == ["flt_eu"]
    assert g.call(c + "DeleteAggregatorFilter", {"aggregator_id": "agg_search", "id": "flt_eu"}) == {}
    assert g.call(c + "DeleteAggregator", {"id": "agg_search"}) == {}


def test_an_error_shows_its_rich_details_and_the_request_id(grpcurl: str, harness: Harness) -> None:
    token = harness.token("org_grpcurl")
    body = {
        "id": "cus_001",
        "aggregator_id": "agg_x",
        "start_date": "2026-01-01T00:00:00Z",
        "end_date": "2026-02-01T00:00:00Z",
        "take": 500,
    }
    result = run(
        grpcurl,
        "-plaintext",
        "-v",
        "-H",
        f"authorization: Bearer {token}",
        "-H",
        "x-request-id: grpcurl-err-1",
        "-d",
        json.dumps(body),
        harness.address,
        "usage.v1.UsageService/ListCustomerUsageEvents",
    )
    assert result.returncode == 64 + 3, result  # grpcurl exits with 64 + the status code
    assert "x-request-id: grpcurl-err-1" in result.stdout  # response headers, printed by -v
    assert "Code: InvalidArgument" in result.stderr
    details = [json.loads(line.split("\t", 1)[1]) for line in result.stderr.splitlines() if "\t{" in line]
    assert details == [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "domain": "usage.v1",
            "reason": "INVALID_ARGUMENT",
        },
        {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "field_violations": [
                {
                    "field": "take",
                    "description": "must be between 0 and 100",
                }
            ],
        },
    ]


@pytest.mark.parametrize("header", [[], ["-H", "authorization: Bearer nope"]])
def test_without_a_valid_token_grpcurl_reports_unauthenticated(
    grpcurl: str, harness: Harness, header: list[str]
) -> None:
    result = run(
        grpcurl, "-plaintext", *header, "-d", "{}", harness.address, "usage.v1.UsageService/ListUsageEvents"
    )
    assert result.returncode == 64 + 16, result
    assert "Code: Unauthenticated" in result.stderr
