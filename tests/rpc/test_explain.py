"""ExplainUsageEvent through a real channel, on SQLite and PostgreSQL (docs/api.md: ExplainUsageEvent).

Its verdict must be the customer page's: a hypothesis test draws events and filters (every operator,
JSON types that differ from the condition's, absent and null properties, `and` and `or`) and checks,
for every event, that the explanation says it counts exactly when ListCustomerUsageEvents lists it.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import grpc
from google.protobuf import field_mask_pb2, json_format
from grpc_harness import Client, condition, event, expect_invalid, expect_not_found, filt, ts
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from usage.v1 import catalog_pb2
from usage.v1 import catalog_service_pb2 as cpb
from usage.v1 import corrections_service_pb2 as xpb
from usage.v1 import usage_service_pb2 as pb

T0 = dt.datetime(2026, 1, 10, tzinfo=dt.UTC)
WINDOW = {"start_date": ts(T0), "end_date": ts(T0 + dt.timedelta(days=1))}


def _aggregator(client: Client, agg_id: str, flt: catalog_pb2.Filter | None = None) -> None:
    agg = catalog_pb2.Aggregator(id=agg_id, name=agg_id, event_type="api_call", operation="count")
    if flt is not None:
        agg.filter.CopyFrom(flt)
    client.catalog.CreateAggregator(cpb.CreateAggregatorRequest(aggregator=agg))


def _named(client: Client, agg_id: str, filter_id: str, flt: catalog_pb2.Filter) -> None:
    f = catalog_pb2.AggregatorFilter(id=filter_id, aggregator_id=agg_id, name=filter_id, filter=flt)
    client.catalog.CreateAggregatorFilter(cpb.CreateAggregatorFilterRequest(aggregator_filter=f))


def _explain(client: Client, event_id: str, agg_id: str, **kwargs: Any) -> pb.ExplainUsageEventResponse:
    return client.usage.ExplainUsageEvent(
        pb.ExplainUsageEventRequest(event_id=event_id, aggregator_id=agg_id, **kwargs)
    )


def _checks(response: pb.ExplainUsageEventResponse) -> list[tuple[str, bool]]:
    return [(c.name, c.passed) for c in response.checks]


def test_an_event_that_counts_shows_every_check_passed(org_a: Client) -> None:
    _aggregator(org_a, "agg", filt(condition("region", "in", ["eu", "us"]), condition("size", "gt", 2)))
    _named(org_a, "agg", "flt_get", filt(condition("method", "equals", "GET")))
    (event_id,) = org_a.ingest_ok(
        [event(timestamp=T0 + dt.timedelta(hours=1), properties={"region": "eu", "size": 3, "method": "GET"})]
    )
    got = _explain(org_a, event_id, "agg", aggregator_filter_id="flt_get", **WINDOW)
    assert got.counts
    assert got.event.id == event_id and got.event.customer_id == "cus_1"
    assert _checks(got) == [
        ("current", True),
        ("customer", True),
        ("event_type", True),
        ("period", True),
        ("aggregator_filter", True),
        ("named_filter", True),
    ]
    got.checks.pop(0)  # below: the checks of ListCustomerUsageEvents' own, by position
    assert got.checks[0].detail == "the event is customer 'cus_1''s"
    assert got.checks[2].detail == (
        "its time 2026-01-10T01:00:00Z is in the period [2026-01-10T00:00:00Z, 2026-01-11T00:00:00Z)"
    )
    own = got.checks[3]
    assert own.conditional == "and"
    assert own.detail == "2 of 2 conditions of the aggregator's filter hold and all must: the event passes it"
    region, size = own.conditions
    assert (region.property, region.operator, region.present, region.passed) == ("region", "in", True, True)
    assert json_format.MessageToDict(region.expected) == ["eu", "us"]
    assert json_format.MessageToDict(region.actual) == "eu"
    assert (
        size.operator,
        json_format.MessageToDict(size.expected),
        json_format.MessageToDict(size.actual),
    ) == (
        "gt",
        2,
        3,
    )


def test_each_failing_check_says_why(org_a: Client) -> None:
    _aggregator(
        org_a,
        "agg",
        filt(condition("region", "equals", "eu"), condition("tier", "is_null"), conditional="or"),
    )
    ids = org_a.ingest_ok(
        [
            event(customer_id="cus_2", timestamp=T0, properties={"region": "us", "tier": "gold"}),
            event(metric_key="storage", timestamp=T0),
            event(timestamp=T0 + dt.timedelta(days=1)),
        ]
    )
    got = _explain(org_a, ids[0], "agg", customer_id="cus_1", **WINDOW)
    assert not got.counts
    assert got.checks.pop(0).name == "current"
    assert _checks(got) == [
        ("customer", False),
        ("event_type", True),
        ("period", True),
        ("aggregator_filter", False),
    ]
    assert got.checks[0].detail == "the event is customer 'cus_2''s, not 'cus_1''s"
    assert got.checks[3].detail == (
        "0 of 2 conditions of the aggregator's filter hold and at least one must: the event does not pass it"
    )
    tier = got.checks[3].conditions[1]
    assert (tier.operator, tier.present, tier.passed, tier.HasField("expected")) == (
        "is_null",
        True,
        False,
        False,
    )
    # Without customer_id, the event's own customer is asked about.
    assert _checks(_explain(org_a, ids[0], "agg"))[1] == ("customer", True)

    wrong_type = _explain(org_a, ids[1], "agg", **WINDOW)
    wrong_type.checks.pop(0)
    assert not wrong_type.counts and _checks(wrong_type)[1] == ("event_type", False)
    assert (
        wrong_type.checks[1].detail
        == "its metric key 'storage' is not the aggregator's event type 'api_call'"
    )
    # An absent property: region's condition does not hold, tier's is_null does: `or` passes.
    assert [(c.present, c.passed) for c in wrong_type.checks[3].conditions] == [(False, False), (False, True)]

    late = _explain(org_a, ids[2], "agg", **WINDOW)
    assert _checks(late)[3] == ("period", False)
    assert late.checks[3].detail.startswith("its time 2026-01-11T00:00:00Z is not before the period's end")
    no_period = _explain(org_a, ids[2], "agg")
    assert [name for name, _ in _checks(no_period)] == [
        "current",
        "customer",
        "event_type",
        "aggregator_filter",
    ]


def test_what_is_not_found_or_invalid(org_a: Client, org_b: Client) -> None:
    _aggregator(org_a, "agg")
    _aggregator(org_a, "other")
    _named(org_a, "other", "flt_other", filt(condition("a", "equals", 1)))
    (event_id,) = org_a.ingest_ok([event(timestamp=T0)])
    expect_not_found(
        org_a.usage.ExplainUsageEvent,
        pb.ExplainUsageEventRequest(event_id="evt_none", aggregator_id="agg"),
        "Usage event not found",
    )
    expect_not_found(
        org_a.usage.ExplainUsageEvent,
        pb.ExplainUsageEventRequest(event_id=event_id, aggregator_id="none"),
        "Aggregator not found",
    )
    expect_not_found(
        org_a.usage.ExplainUsageEvent,
        pb.ExplainUsageEventRequest(event_id=event_id, aggregator_id="agg", aggregator_filter_id="flt_other"),
        "Aggregator filter not found",
    )
    expect_not_found(
        org_a.usage.ExplainUsageEvent,
        pb.ExplainUsageEventRequest(event_id=event_id, aggregator_id="agg", customer_id="cus_nobody"),
        "Customer not found",
    )
    # Another organization's event is not found, as one that never existed.
    _aggregator(org_b, "agg")
    expect_not_found(
        org_b.usage.ExplainUsageEvent,
        pb.ExplainUsageEventRequest(event_id=event_id, aggregator_id="agg"),
        "Usage event not found",
    )
    expect_invalid(
        org_a.usage.ExplainUsageEvent,
        pb.ExplainUsageEventRequest(event_id=event_id, aggregator_id="agg", end_date=ts(T0)),
        "end_date",
    )
    expect_invalid(
        org_a.usage.ExplainUsageEvent,
        pb.ExplainUsageEventRequest(
            event_id=event_id, aggregator_id="agg", start_date=ts(T0), end_date=ts(T0)
        ),
        "end_date",
    )
    expect_invalid(
        org_a.usage.ExplainUsageEvent, pb.ExplainUsageEventRequest(aggregator_id="agg"), "event_id"
    )


def test_voided_and_replaced_versions_are_explained_with_their_correction(org_a: Client) -> None:
    _aggregator(org_a, "agg", filt(condition("region", "equals", "eu")))
    voided, amended = org_a.ingest_ok([event(timestamp=T0, properties={"region": "eu"}) for _ in range(2)])
    org_a.corrections.VoidUsageEvents(xpb.VoidUsageEventsRequest(event_ids=[voided], reason="test traffic"))
    request = xpb.AmendUsageEventRequest(
        event_id=amended, reason="wrong region", update_mask=field_mask_pb2.FieldMask(paths=["properties"])
    )
    request.event.properties.update({"region": "us"})
    new = org_a.corrections.AmendUsageEvent(request).event.id

    got = _explain(org_a, voided, "agg", **WINDOW)
    assert not got.counts and got.event.id == voided
    assert _checks(got)[0] == ("current", False)
    assert got.checks[0].detail.startswith("the event was voided at 20")
    assert got.checks[0].detail.endswith("by 'org_a': 'test traffic'")
    assert all(passed for _, passed in _checks(got)[1:])  # it would count, were it not voided
    old = _explain(org_a, amended, "agg", **WINDOW)
    assert not old.counts and old.checks[0].detail.startswith(f"this version was replaced by {new!r} at ")
    current = _explain(org_a, new, "agg", **WINDOW)
    assert not current.counts and _checks(current)[0] == ("current", True)
    assert _checks(current)[-1] == ("aggregator_filter", False)  # the amended region is "us"
    page = org_a.usage.ListCustomerUsageEvents(
        pb.ListCustomerUsageEventsRequest(id="cus_1", aggregator_id="agg", take=100, **WINDOW)
    )
    assert page.meta.total == 0


# ---- the verdict is the page's ---------------------------------------------------------------------
VALUES = st.sampled_from(["a", "b", "", "1", 1, 2.5, -3, 0, True, False])
PROPERTY_VALUE = VALUES  # ingestion refuses null values: absent keys stand for them
OPERATORS = ["equals", "not_equals", "in", "not_in", "gt", "gte", "lt", "lte", "is_null", "is_not_null"]


@st.composite
def conditions(draw: st.DrawFn) -> catalog_pb2.FilterField:
    prop = draw(st.sampled_from(["p", "q"]))
    op = draw(st.sampled_from(OPERATORS))
    if op in ("is_null", "is_not_null"):
        return condition(prop, op)
    if op in ("in", "not_in"):
        return condition(prop, op, draw(st.lists(VALUES, min_size=1, max_size=3)))
    return condition(prop, op, draw(VALUES))


filters = st.builds(
    lambda fields, conditional: filt(*fields, conditional=conditional),
    st.lists(conditions(), max_size=3),
    st.sampled_from(["and", "or"]),
)
events = st.lists(
    st.fixed_dictionaries(
        {
            "customer": st.sampled_from(["c1", "c2"]),
            "metric": st.sampled_from(["api_call", "storage"]),
            "minutes": st.integers(-90, 24 * 60 + 90),
            "properties": st.dictionaries(st.sampled_from(["p", "q", "r"]), PROPERTY_VALUE, max_size=3),
        }
    ),
    min_size=1,
    max_size=8,
)


def test_the_verdict_is_the_customer_pages(org_a: Client, backend: str) -> None:
    counter = itertools.count()

    @settings(
        max_examples=25 if backend == "sqlite" else 15,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(events=events, own=filters, named=st.none() | filters, windowed=st.booleans())
    def check(
        events: list[dict[str, Any]],
        own: catalog_pb2.Filter,
        named: catalog_pb2.Filter | None,
        windowed: bool,
    ) -> None:
        n = next(counter)
        agg_id = f"agg_h{n}"
        try:
            _aggregator(org_a, agg_id, own)
            if named is not None:
                _named(org_a, agg_id, f"flt_h{n}", named)
        except grpc.RpcError as err:  # a value the catalog refuses for its operator
            assume(err.code() != grpc.StatusCode.INVALID_ARGUMENT)
            raise
        customers = {e["customer"]: f"{e['customer']}_{n}" for e in events}
        ids = org_a.ingest_ok(
            event(
                customer_id=customers[e["customer"]],
                metric_key=e["metric"],
                timestamp=T0 + dt.timedelta(minutes=e["minutes"]),
                properties=e["properties"],
            )
            for e in events
        )
        window = (
            WINDOW
            if windowed
            else {"start_date": ts(T0 - dt.timedelta(days=1)), "end_date": ts(T0 + dt.timedelta(days=2))}
        )
        extra = {"aggregator_filter_id": f"flt_h{n}"} if named is not None else {}
        listed: set[str] = set()
        for customer in set(customers.values()):
            page = org_a.usage.ListCustomerUsageEvents(
                pb.ListCustomerUsageEventsRequest(
                    id=customer, aggregator_id=agg_id, take=100, **window, **extra
                )
            )
            listed.update(e.id for e in page.data)
        for event_id, e in zip(ids, events, strict=True):
            got = _explain(org_a, event_id, agg_id, customer_id=customers[e["customer"]], **window, **extra)
            assert got.counts == (event_id in listed), (e, own, named, got)
            assert got.counts == all(c.passed for c in got.checks)

    check()
