"""Authentication, tenancy and the error mapping, through a real channel (docs/api.md, SECURITY.md)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import grpc
import jwt
import pytest
from google.protobuf import descriptor_pool, field_mask_pb2, message_factory
from google.protobuf.message import Message
from grpc_harness import (
    JWT_SECRET,
    Client,
    ErrorDetails,
    Harness,
    at,
    condition,
    event,
    expect_error,
    expect_invalid,
    expect_not_found,
    filt,
    ts,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from usage.v1 import catalog_pb2
from usage.v1 import catalog_service_pb2 as cpb
from usage.v1 import usage_service_pb2 as pb

import server.app
from server.auth import mint_token
from server.config import Settings

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

START = at("2026-01-10T00:00:00Z")
END = at("2026-01-11T00:00:00Z")

# Every RPC of every API service the server serves (server.app.SERVICE_NAMES): a new service or RPC
# is covered here, and by the tenant isolation suite, which fails until it has a probe for it.
ALL_METHODS = [
    (service, method.name)
    for service in (descriptor_pool.Default().FindServiceByName(name) for name in server.app.SERVICE_NAMES)
    for method in service.methods
]


def empty_request(service: Any, method: str) -> Message:
    """An empty request message of `service`'s `method`."""
    return message_factory.GetMessageClass(service.methods_by_name[method].input_type)()


def test_all_rpcs_are_listed() -> None:
    names = sorted(m for _, m in ALL_METHODS)
    assert len(names) == 23
    assert {
        "ListCustomerUsageEvents",
        "ListUsageEvents",
        "AggregateUsage",
        "IngestUsageEvents",
        "GetCustomerUsage",
        "GetAggregatorTimeSeries",
        "ListAggregatorUsageByCustomer",
    } <= set(names)
    assert {"VoidUsageEvents", "AmendUsageEvent", "GetUsageEventHistory"} <= set(names)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _bad_tokens(h: Harness) -> dict[str, str]:
    now = dt.datetime.now(dt.UTC)
    exp = int((now + dt.timedelta(hours=1)).timestamp())
    claims = {"org_id": "org_a", "exp": exp}
    return {
        "expired": mint_token(h.settings, "org_a", dt.timedelta(seconds=-120)),
        "wrong_secret": mint_token(
            Settings(jwt_secret="another-secret-another-secret-xx"), "org_a", dt.timedelta(hours=1)
        ),
        "alg_none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "garbage": "not-a-jwt",
        "no_exp": jwt.encode({"org_id": "org_a"}, JWT_SECRET, algorithm="HS256"),
        "no_org": jwt.encode({"sub": "org_a", "exp": exp}, JWT_SECRET, algorithm="HS256"),
        "bad_org": jwt.encode({"org_id": "org a", "exp": exp}, JWT_SECRET, algorithm="HS256"),
        "org_not_a_string": jwt.encode({"org_id": 42, "exp": exp}, JWT_SECRET, algorithm="HS256"),
        "hs512": jwt.encode(claims, JWT_SECRET, algorithm="HS512"),  # right key, algorithm not allowed
        "signature_stripped": mint_token(h.settings, "org_a", dt.timedelta(hours=1)).rsplit(".", 1)[0] + ".",
    }


@pytest.mark.parametrize(("service", "method"), ALL_METHODS, ids=[m for _, m in ALL_METHODS])
def test_every_rpc_requires_a_token(harness: Harness, service, method: str) -> None:
    request = empty_request(service, method)
    variants = [
        (),
        (("authorization", ""),),
        (("authorization", "Bearer"),),
        (("authorization", "Bearer   "),),
        (("authorization", f"Basic {harness.token('org_a')}"),),
        (("authorization", harness.token("org_a")),),  # no scheme
    ]
    variants += [(("authorization", f"Bearer {t}"),) for t in _bad_tokens(harness).values()]
    for metadata in variants:
        client = harness.raw_client(metadata)
        stub = client.stub(service.name)
        got = expect_error(getattr(stub, method), request, grpc.StatusCode.UNAUTHENTICATED)
        assert got.reason.startswith("TOKEN_"), metadata
        assert got.domain == "usage.v1"


def test_unauthenticated_messages(harness: Harness) -> None:
    def error(metadata) -> ErrorDetails:
        return expect_error(
            harness.raw_client(metadata).usage.ListUsageEvents,
            pb.ListUsageEventsRequest(),
            grpc.StatusCode.UNAUTHENTICATED,
        )

    def message(metadata) -> str:
        return error(metadata).message

    bad = _bad_tokens(harness)
    assert "missing" in message(())
    assert "expired" in message((("authorization", f"Bearer {bad['expired']}"),))
    assert "org_id" in message((("authorization", f"Bearer {bad['no_org']}"),))
    for name in ("wrong_secret", "alg_none", "garbage", "no_exp", "hs512"):
        assert message((("authorization", f"Bearer {bad[name]}"),)) == "the bearer token is invalid", name
    # ErrorInfo.reason tells the cases apart for programs: refresh on TOKEN_EXPIRED only.
    reasons = {name: error((("authorization", f"Bearer {t}"),)).reason for name, t in bad.items()}
    assert reasons == {
        "expired": "TOKEN_EXPIRED",
        "no_org": "TOKEN_ORGANIZATION_INVALID",
        "bad_org": "TOKEN_ORGANIZATION_INVALID",
        "org_not_a_string": "TOKEN_ORGANIZATION_INVALID",
        **{
            n: "TOKEN_INVALID"
            for n in ("wrong_secret", "alg_none", "garbage", "no_exp", "hs512", "signature_stripped")
        },
    }
    assert error(()).reason == error((("authorization", "Basic x"),)).reason == "TOKEN_MISSING"


def test_scheme_is_case_insensitive_and_the_token_works(harness: Harness) -> None:
    token = harness.token("org_a")
    for header in (f"Bearer {token}", f"bearer {token}", f"BEARER {token}"):
        page = harness.raw_client((("authorization", header),)).usage.ListUsageEvents(
            pb.ListUsageEventsRequest()
        )
        assert list(page.data) == []


def test_two_credentials_are_refused_whichever_they_are(harness: Harness) -> None:
    """Issue 11: the last of two authorization headers was served. Neither is chosen now, even when both
    are valid (a proxy adding its own credential beside the caller's must not act as either)."""
    a, b = harness.token("org_a"), harness.token("org_b")
    harness.client("org_a").ingest(event())
    for pair in ((a, b), (a, a), (a, "not-a-jwt"), ("not-a-jwt", a)):
        metadata = tuple(("authorization", f"Bearer {t}") for t in pair)
        got = expect_error(
            harness.raw_client(metadata).usage.ListUsageEvents,
            pb.ListUsageEventsRequest(),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert got.reason == "CREDENTIALS_AMBIGUOUS"
        assert "2 authorization headers" in got.message


def test_health_and_reflection_need_no_token(harness: Harness) -> None:
    health = health_pb2_grpc.HealthStub(harness.channel)
    for service in ("", *server.app.SERVICE_NAMES):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    unknown = expect_error(
        health.Check, health_pb2.HealthCheckRequest(service="nope"), grpc.StatusCode.NOT_FOUND
    )
    assert unknown.code == grpc.StatusCode.NOT_FOUND

    reflection = reflection_pb2_grpc.ServerReflectionStub(harness.channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="usage.v1.UsageService"),
    ]
    listed, described = list(reflection.ServerReflectionInfo(iter(requests), timeout=10))
    names = {s.name for s in listed.list_services_response.service}
    assert {*server.app.SERVICE_NAMES, "grpc.health.v1.Health"} <= names
    assert described.file_descriptor_response.file_descriptor_proto


def _seed_org_a(a: Client) -> dict[str, str]:
    a.catalog.CreateCustomer(cpb.CreateCustomerRequest(customer=catalog_pb2.Customer(id="cus_a", name="A")))
    a.catalog.CreateAggregator(
        cpb.CreateAggregatorRequest(
            aggregator=catalog_pb2.Aggregator(id="agg_a", name="A", event_type="api_call", operation="count")
        )
    )
    a.catalog.CreateAggregatorFilter(
        cpb.CreateAggregatorFilterRequest(
            aggregator_filter=catalog_pb2.AggregatorFilter(
                id="flt_a", aggregator_id="agg_a", name="A", filter=filt(condition("region", "equals", "eu"))
            )
        )
    )
    (eid,) = a.ingest_ok(
        [
            event(
                customer_id="cus_a",
                timestamp=START,
                idempotency_key="shared-key",
                properties={"region": "eu"},
            )
        ]
    )
    return {"event": eid}


def test_organizations_are_isolated(org_a: Client, org_b: Client) -> None:
    seeded = _seed_org_a(org_a)
    b = org_b
    # Lists are empty.
    assert b.all_events() == []
    assert list(b.catalog.ListCustomers(cpb.ListCustomersRequest()).data) == []
    assert list(b.catalog.ListAggregators(cpb.ListAggregatorsRequest()).data) == []
    agg = b.usage.AggregateUsage(pb.AggregateUsageRequest(bucket="day", since=ts(START), until=ts(END)))
    assert [s.total for s in agg.series] == [0]
    # A's ids are simply not found.
    expect_not_found(b.catalog.GetCustomer, cpb.GetCustomerRequest(id="cus_a"), "Customer not found")
    expect_not_found(b.catalog.GetAggregator, cpb.GetAggregatorRequest(id="agg_a"), "Aggregator not found")
    expect_not_found(b.catalog.ListAggregatorFilters, cpb.ListAggregatorFiltersRequest(aggregator_id="agg_a"))
    expect_not_found(b.catalog.DeleteAggregator, cpb.DeleteAggregatorRequest(id="agg_a"))
    expect_not_found(
        b.catalog.DeleteAggregatorFilter, cpb.DeleteAggregatorFilterRequest(aggregator_id="agg_a", id="flt_a")
    )
    expect_not_found(
        b.catalog.UpdateAggregator,
        cpb.UpdateAggregatorRequest(
            aggregator=catalog_pb2.Aggregator(id="agg_a", name="stolen"),
            update_mask=field_mask_pb2.FieldMask(paths=["name"]),
        ),
    )
    expect_not_found(
        b.catalog.CreateAggregatorFilter,
        cpb.CreateAggregatorFilterRequest(
            aggregator_filter=catalog_pb2.AggregatorFilter(aggregator_id="agg_a", name="x", filter=filt())
        ),
    )
    request = pb.ListCustomerUsageEventsRequest(
        id="cus_a", aggregator_id="agg_a", start_date=ts(START), end_date=ts(END)
    )
    expect_not_found(b.usage.ListCustomerUsageEvents, request, "Customer not found")

    # B may use the same ids and keys: they are B's own.
    b.catalog.CreateCustomer(cpb.CreateCustomerRequest(customer=catalog_pb2.Customer(id="cus_a", name="B")))
    expect_not_found(b.usage.ListCustomerUsageEvents, request, "Aggregator not found")
    b.catalog.CreateAggregator(
        cpb.CreateAggregatorRequest(
            aggregator=catalog_pb2.Aggregator(id="agg_a", name="B", event_type="api_call", operation="count")
        )
    )
    assert b.usage.ListCustomerUsageEvents(request).meta.total == 0
    # A's filter id is not B's.
    expect_not_found(
        b.usage.ListCustomerUsageEvents,
        pb.ListCustomerUsageEventsRequest(
            id="cus_a",
            aggregator_id="agg_a",
            start_date=ts(START),
            end_date=ts(END),
            aggregator_filter_id="flt_a",
        ),
    )
    (r,) = b.ingest(
        event(customer_id="cus_a", timestamp=START, idempotency_key="shared-key", properties={"region": "eu"})
    )
    assert r.status == "ACCEPTED" and r.event_id != seeded["event"]
    assert [e.organization_id for e in b.all_events()] == ["org_b"]

    # A is unchanged.
    assert org_a.catalog.GetCustomer(cpb.GetCustomerRequest(id="cus_a")).customer.name == "A"
    assert org_a.catalog.GetAggregator(cpb.GetAggregatorRequest(id="agg_a")).aggregator.name == "A"
    assert [e.id for e in org_a.all_events()] == [seeded["event"]]
    page = org_a.usage.ListCustomerUsageEvents(
        pb.ListCustomerUsageEventsRequest(
            id="cus_a",
            aggregator_id="agg_a",
            start_date=ts(START),
            end_date=ts(END),
            aggregator_filter_id="flt_a",
        )
    )
    assert [e.id for e in page.data] == [seeded["event"]]


def test_the_org_comes_from_the_token_claim(db_url: str) -> None:
    h = Harness.start(db_url, jwt_org_claim="tenant")
    try:
        exp = int((dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).timestamp())
        with_tenant = jwt.encode({"tenant": "org_t", "exp": exp}, JWT_SECRET, algorithm="HS256")
        with_org_id = jwt.encode({"org_id": "org_t", "exp": exp}, JWT_SECRET, algorithm="HS256")
        ok = h.raw_client((("authorization", f"Bearer {with_tenant}"),))
        (r,) = ok.ingest(event(timestamp=START))
        assert r.status == "ACCEPTED"
        assert [e.organization_id for e in ok.all_events()] == ["org_t"]
        expect_error(
            h.raw_client((("authorization", f"Bearer {with_org_id}"),)).usage.ListUsageEvents,
            pb.ListUsageEventsRequest(),
            grpc.StatusCode.UNAUTHENTICATED,
        )
    finally:
        h.close()


def test_invalid_argument_shape(org_a: Client) -> None:
    got = expect_invalid(
        org_a.usage.ListCustomerUsageEvents, pb.ListCustomerUsageEventsRequest(take=101), "take"
    )
    # Every violated field is named; the message names the first one.
    assert {"id", "aggregator_id", "start_date", "end_date", "take"} <= set(got.fields)
    assert got.message.startswith(f"invalid {got.fields[0]}: ")
    assert f"(and {len(got.fields) - 1} more)" in got.message
    assert all(description for _, description in got.violations)


def test_not_found_shape(org_a: Client) -> None:
    got = expect_not_found(
        org_a.catalog.GetAggregator, cpb.GetAggregatorRequest(id="x"), "Aggregator not found"
    )
    assert (got.reason, got.domain, got.metadata) == ("NOT_FOUND", "usage.v1", {"resource": "aggregator"})
    assert got.violations == []
