"""CatalogService through a real channel, on SQLite and PostgreSQL (docs/api.md: CatalogService, Filters)."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpc_harness import (
    Client,
    at,
    condition,
    event,
    expect_error,
    expect_invalid,
    expect_not_found,
    filt,
    ts,
)
from usage.v1 import catalog_pb2
from usage.v1 import catalog_service_pb2 as cpb
from usage.v1 import usage_service_pb2 as pb

START = at("2026-01-10T00:00:00Z")
END = at("2026-01-11T00:00:00Z")


def create_customer(client: Client, cid: str = "", name: str = "") -> catalog_pb2.Customer:
    return client.catalog.CreateCustomer(
        cpb.CreateCustomerRequest(customer=catalog_pb2.Customer(id=cid, name=name))
    ).customer


def aggregator(agg_id: str = "", **fields) -> catalog_pb2.Aggregator:
    base = dict(name=agg_id or "An aggregator", event_type="api_call", operation="count")
    base.update(fields)
    return catalog_pb2.Aggregator(id=agg_id, **base)


def create_aggregator(client: Client, agg_id: str = "", **fields) -> catalog_pb2.Aggregator:
    return client.catalog.CreateAggregator(
        cpb.CreateAggregatorRequest(aggregator=aggregator(agg_id, **fields))
    ).aggregator


def agg_filter(agg_id: str, filter_id: str = "", flt: catalog_pb2.Filter | None = None, name: str = "f"):
    out = catalog_pb2.AggregatorFilter(id=filter_id, aggregator_id=agg_id, name=name)
    if flt is not None:
        out.filter.CopyFrom(flt)
    return out


def create_filter(client: Client, agg_id: str, filter_id: str = "", flt: catalog_pb2.Filter | None = None):
    flt = flt if flt is not None else filt(condition("region", "equals", "eu"))
    return client.catalog.CreateAggregatorFilter(
        cpb.CreateAggregatorFilterRequest(aggregator_filter=agg_filter(agg_id, filter_id, flt))
    ).aggregator_filter


# =============================================================================================
# Customers
# =============================================================================================
def test_create_and_get_customer(org_a: Client) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    created = create_customer(org_a, "cus_123", "Acme")
    assert (created.id, created.name) == ("cus_123", "Acme")
    assert created.created_at.ToDatetime(tzinfo=dt.UTC) >= before
    got = org_a.catalog.GetCustomer(cpb.GetCustomerRequest(id="cus_123")).customer
    assert got == created


def test_create_customer_generates_an_id(org_a: Client) -> None:
    a = create_customer(org_a, name="No id")
    b = create_customer(org_a)
    assert a.id and b.id and a.id != b.id
    assert org_a.catalog.GetCustomer(cpb.GetCustomerRequest(id=a.id)).customer.name == "No id"


def test_create_customer_twice_is_already_exists(org_a: Client) -> None:
    create_customer(org_a, "cus_1", "First")
    got = expect_error(
        org_a.catalog.CreateCustomer,
        cpb.CreateCustomerRequest(customer=catalog_pb2.Customer(id="cus_1", name="Second")),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert got.reason == "ALREADY_EXISTS"
    assert org_a.catalog.GetCustomer(cpb.GetCustomerRequest(id="cus_1")).customer.name == "First"


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (cpb.CreateCustomerRequest(), "customer"),
        (cpb.CreateCustomerRequest(customer=catalog_pb2.Customer(id="bad id")), "customer.id"),
        (cpb.CreateCustomerRequest(customer=catalog_pb2.Customer(id="c" * 129)), "customer.id"),
        (cpb.CreateCustomerRequest(customer=catalog_pb2.Customer(id="ok", name="n" * 257)), "customer.name"),
    ],
)
def test_create_customer_invalid(org_a: Client, request_, field: str) -> None:
    expect_invalid(org_a.catalog.CreateCustomer, request_, field)


def test_get_customer_not_found_and_invalid(org_a: Client) -> None:
    got = expect_not_found(
        org_a.catalog.GetCustomer, cpb.GetCustomerRequest(id="cus_nope"), "Customer not found"
    )
    assert got.metadata == {"resource": "customer"}
    expect_invalid(org_a.catalog.GetCustomer, cpb.GetCustomerRequest(id=""), "id")


def test_list_customers_pages_by_id(org_a: Client) -> None:
    ids = [f"cus_{i:02d}" for i in (5, 1, 3, 7, 2, 6, 4)]
    for cid in ids:
        create_customer(org_a, cid)
    seen, cursor, sizes = [], "", []
    while True:
        page = org_a.catalog.ListCustomers(cpb.ListCustomersRequest(limit=3, cursor=cursor))
        seen += [c.id for c in page.data]
        sizes.append(len(page.data))
        assert page.pagination.has_more == bool(page.pagination.cursor)
        cursor = page.pagination.cursor
        if not cursor:
            break
    assert seen == sorted(ids)
    assert sizes == [3, 3, 1]
    default = org_a.catalog.ListCustomers(cpb.ListCustomersRequest())
    assert [c.id for c in default.data] == sorted(ids)
    assert default.pagination.cursor == "" and not default.pagination.has_more
    exact = org_a.catalog.ListCustomers(cpb.ListCustomersRequest(limit=7))
    assert len(exact.data) == 7 and exact.pagination.cursor == ""


def test_list_customers_default_and_max_limit(org_a: Client) -> None:
    org_a.ingest_ok([event(customer_id=f"cus_{i:03d}", timestamp=START) for i in range(110)])
    assert len(org_a.catalog.ListCustomers(cpb.ListCustomersRequest()).data) == 25
    assert len(org_a.catalog.ListCustomers(cpb.ListCustomersRequest(limit=0)).data) == 25
    big = org_a.catalog.ListCustomers(cpb.ListCustomersRequest(limit=500))
    assert len(big.data) == 100 and big.pagination.has_more


def test_list_customers_invalid(org_a: Client) -> None:
    expect_invalid(org_a.catalog.ListCustomers, cpb.ListCustomersRequest(limit=-1), "limit")
    expect_invalid(org_a.catalog.ListCustomers, cpb.ListCustomersRequest(cursor="nope"), "cursor")
    for i in range(3):
        create_aggregator(org_a, f"agg_{i}")
    agg_cursor = org_a.catalog.ListAggregators(cpb.ListAggregatorsRequest(limit=1)).pagination.cursor
    assert agg_cursor
    expect_invalid(org_a.catalog.ListCustomers, cpb.ListCustomersRequest(cursor=agg_cursor), "cursor")


# =============================================================================================
# Aggregators
# =============================================================================================
def test_create_and_get_aggregator_round_trips_every_field(org_a: Client) -> None:
    flt = filt(
        condition("region", "in", ["eu", "us"]),
        condition("latency_ms", "gte", 100),
        condition("deleted", "is_null"),
        conditional="or",
    )
    created = create_aggregator(
        org_a,
        "agg_full",
        name="Storage",
        event_type="storage_gb",
        operation="sum",
        property="size",
        unit_name="GB",
        display_name_property="bucket",
        filter=flt,
    )
    assert created.id == "agg_full"
    assert (created.name, created.event_type, created.operation, created.property) == (
        "Storage",
        "storage_gb",
        "sum",
        "size",
    )
    assert (created.unit_name, created.display_name_property) == ("GB", "bucket")
    assert created.filter == flt
    assert created.created_at.seconds > 0
    assert created.updated_at == created.created_at
    got = org_a.catalog.GetAggregator(cpb.GetAggregatorRequest(id="agg_full")).aggregator
    assert got == created


def test_create_aggregator_generates_an_id_and_has_no_filter_by_default(org_a: Client) -> None:
    created = create_aggregator(org_a)
    assert created.id
    assert not created.HasField("filter")
    assert org_a.catalog.GetAggregator(cpb.GetAggregatorRequest(id=created.id)).aggregator == created


def test_create_aggregator_twice_is_already_exists(org_a: Client) -> None:
    create_aggregator(org_a, "agg_1")
    expect_error(
        org_a.catalog.CreateAggregator,
        cpb.CreateAggregatorRequest(aggregator=aggregator("agg_1", name="again")),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert org_a.catalog.GetAggregator(cpb.GetAggregatorRequest(id="agg_1")).aggregator.name == "agg_1"


INVALID_AGGREGATORS = [
    (dict(name=""), "aggregator.name"),
    (dict(event_type=""), "aggregator.event_type"),
    (dict(event_type="a,b"), "aggregator.event_type"),
    (dict(operation="avg"), "aggregator.operation"),
    (dict(operation=""), "aggregator.operation"),
    (dict(property="bad prop"), "aggregator.property"),
    (dict(display_name_property="bad name"), "aggregator.display_name_property"),
    (dict(filter=filt(conditional="xor")), "aggregator.filter.conditional"),
    (dict(filter=filt(condition("region", "like", "eu"))), "aggregator.filter.fields[0].operator"),
    (dict(filter=filt(condition("", "equals", "eu"))), "aggregator.filter.fields[0].property"),
    (dict(filter=filt(condition("region", "in", "eu"))), "aggregator.filter.fields[0].value"),
    (dict(filter=filt(condition("region", "not_in", 5))), "aggregator.filter.fields[0].value"),
    (dict(filter=filt(condition("region", "in", []))), "aggregator.filter.fields[0].value"),
    (dict(filter=filt(condition("region", "in", [["nested"]]))), "aggregator.filter.fields[0].value"),
    (dict(filter=filt(condition("region", "is_null", "eu"))), "aggregator.filter.fields[0].value"),
    (dict(filter=filt(condition("region", "is_not_null", 0))), "aggregator.filter.fields[0].value"),
    (dict(filter=filt(condition("n", "gt", True))), "aggregator.filter.fields[0].value"),
    (dict(filter=filt(condition("n", "lte", ["a"]))), "aggregator.filter.fields[0].value"),
    (dict(filter=filt(condition("n", "gte"))), "aggregator.filter.fields[0].value"),
    (dict(filter=filt(condition("n", "equals", [1]))), "aggregator.filter.fields[0].value"),
    (dict(filter=filt(condition("n", "equals"))), "aggregator.filter.fields[0].value"),
    (dict(filter=filt(condition("n", "not_equals", null=True))), "aggregator.filter.fields[0].value"),
    (
        dict(filter=filt(condition("a", "equals", 1), condition("b", "in", "x"))),
        "aggregator.filter.fields[1].value",
    ),
]


@pytest.mark.parametrize(("fields", "field"), INVALID_AGGREGATORS)
def test_create_aggregator_invalid(org_a: Client, fields: dict, field: str) -> None:
    expect_invalid(
        org_a.catalog.CreateAggregator,
        cpb.CreateAggregatorRequest(aggregator=aggregator("agg_x", **fields)),
        field,
    )
    expect_not_found(org_a.catalog.GetAggregator, cpb.GetAggregatorRequest(id="agg_x"))


def test_create_aggregator_invalid_id_and_missing_resource(org_a: Client) -> None:
    expect_invalid(org_a.catalog.CreateAggregator, cpb.CreateAggregatorRequest(), "aggregator")
    expect_invalid(
        org_a.catalog.CreateAggregator,
        cpb.CreateAggregatorRequest(aggregator=aggregator("bad id")),
        "aggregator.id",
    )


def test_get_aggregator_not_found(org_a: Client) -> None:
    got = expect_not_found(
        org_a.catalog.GetAggregator, cpb.GetAggregatorRequest(id="agg_nope"), "Aggregator not found"
    )
    assert got.metadata == {"resource": "aggregator"}
    expect_invalid(org_a.catalog.GetAggregator, cpb.GetAggregatorRequest(id=""), "id")


def test_list_aggregators_pages_by_id(org_a: Client) -> None:
    ids = [f"agg_{c}" for c in "dbfaec"]
    for agg_id in ids:
        create_aggregator(org_a, agg_id)
    first = org_a.catalog.ListAggregators(cpb.ListAggregatorsRequest(limit=4))
    assert [a.id for a in first.data] == sorted(ids)[:4]
    assert first.pagination.has_more
    second = org_a.catalog.ListAggregators(
        cpb.ListAggregatorsRequest(limit=4, cursor=first.pagination.cursor)
    )
    assert [a.id for a in second.data] == sorted(ids)[4:]
    assert second.pagination.cursor == "" and not second.pagination.has_more
    # limit may change between pages
    one = org_a.catalog.ListAggregators(cpb.ListAggregatorsRequest(limit=1, cursor=first.pagination.cursor))
    assert [a.id for a in one.data] == [sorted(ids)[4]]
    expect_invalid(org_a.catalog.ListAggregators, cpb.ListAggregatorsRequest(limit=-1), "limit")
    tampered = first.pagination.cursor[:-1] + ("A" if first.pagination.cursor[-1] != "A" else "B")
    expect_invalid(org_a.catalog.ListAggregators, cpb.ListAggregatorsRequest(cursor=tampered), "cursor")


def _update(client: Client, agg: catalog_pb2.Aggregator, *paths: str):
    request = cpb.UpdateAggregatorRequest(aggregator=agg)
    if paths:
        request.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=list(paths)))
    return client.catalog.UpdateAggregator(request).aggregator


def test_update_aggregator_with_mask_changes_only_masked_fields(org_a: Client) -> None:
    original_filter = filt(condition("region", "equals", "eu"))
    created = create_aggregator(
        org_a,
        "agg_1",
        name="Old",
        unit_name="calls",
        display_name_property="endpoint",
        filter=original_filter,
    )
    changes = catalog_pb2.Aggregator(
        id="agg_1", name="New", event_type="other_metric", unit_name="", operation="", filter=filt()
    )
    updated = _update(org_a, changes, "name")
    assert updated.name == "New"
    assert (updated.event_type, updated.operation, updated.unit_name, updated.display_name_property) == (
        "api_call",
        "count",
        "calls",
        "endpoint",
    )
    assert updated.filter == original_filter
    assert updated.created_at == created.created_at
    assert updated.updated_at.ToNanoseconds() >= created.updated_at.ToNanoseconds()
    assert org_a.catalog.GetAggregator(cpb.GetAggregatorRequest(id="agg_1")).aggregator == updated

    # Several paths, including the filter.
    new_filter = filt(condition("method", "in", ["GET", "HEAD"]))
    updated = _update(
        org_a,
        catalog_pb2.Aggregator(id="agg_1", unit_name="requests", filter=new_filter, name="ignored"),
        "unit_name",
        "filter",
    )
    assert (updated.name, updated.unit_name) == ("New", "requests")
    assert updated.filter == new_filter

    # The filter can be removed by masking it without a value.
    updated = _update(org_a, catalog_pb2.Aggregator(id="agg_1"), "filter")
    assert not updated.HasField("filter")
    assert updated.name == "New"


def test_update_aggregator_without_mask_replaces_every_mutable_field(org_a: Client) -> None:
    created = create_aggregator(org_a, "agg_1", unit_name="calls", filter=filt(condition("a", "equals", 1)))
    replacement = aggregator(
        "agg_1", name="Replaced", event_type="storage_gb", operation="sum", property="gb"
    )
    updated = _update(org_a, replacement)
    assert (updated.name, updated.event_type, updated.operation, updated.property) == (
        "Replaced",
        "storage_gb",
        "sum",
        "gb",
    )
    assert updated.unit_name == ""
    assert not updated.HasField("filter")
    assert updated.created_at == created.created_at


def test_update_aggregator_invalid(org_a: Client) -> None:
    create_aggregator(org_a, "agg_1")
    update = org_a.catalog.UpdateAggregator
    for path in ("id", "created_at", "nonsense"):
        request = cpb.UpdateAggregatorRequest(
            aggregator=catalog_pb2.Aggregator(id="agg_1", name="x"),
            update_mask=field_mask_pb2.FieldMask(paths=[path]),
        )
        expect_invalid(update, request, "update_mask")
    # Masked fields must be valid.
    expect_invalid(
        update,
        cpb.UpdateAggregatorRequest(
            aggregator=catalog_pb2.Aggregator(id="agg_1", name=""),
            update_mask=field_mask_pb2.FieldMask(paths=["name"]),
        ),
        "aggregator.name",
    )
    expect_invalid(
        update,
        cpb.UpdateAggregatorRequest(
            aggregator=catalog_pb2.Aggregator(id="agg_1", operation="avg"),
            update_mask=field_mask_pb2.FieldMask(paths=["operation"]),
        ),
        "aggregator.operation",
    )
    expect_invalid(
        update,
        cpb.UpdateAggregatorRequest(
            aggregator=catalog_pb2.Aggregator(id="agg_1", filter=filt(condition("r", "in", "eu"))),
            update_mask=field_mask_pb2.FieldMask(paths=["filter"]),
        ),
        "aggregator.filter.fields[0].value",
    )
    # Without a mask every field is replaced, so an incomplete aggregator is invalid.
    expect_invalid(
        update, cpb.UpdateAggregatorRequest(aggregator=catalog_pb2.Aggregator(id="agg_1")), "aggregator.name"
    )
    expect_invalid(
        update,
        cpb.UpdateAggregatorRequest(
            aggregator=catalog_pb2.Aggregator(name="x"), update_mask=field_mask_pb2.FieldMask(paths=["name"])
        ),
        "aggregator.id",
    )
    expect_invalid(update, cpb.UpdateAggregatorRequest(), "aggregator")
    # Nothing changed.
    assert org_a.catalog.GetAggregator(cpb.GetAggregatorRequest(id="agg_1")).aggregator.name == "agg_1"


def test_update_aggregator_not_found(org_a: Client) -> None:
    expect_not_found(
        org_a.catalog.UpdateAggregator,
        cpb.UpdateAggregatorRequest(
            aggregator=aggregator("agg_nope"), update_mask=field_mask_pb2.FieldMask(paths=["name"])
        ),
        "Aggregator not found",
    )


def test_update_changes_what_customer_events_match(org_a: Client) -> None:
    create_aggregator(org_a, "agg")
    org_a.ingest_ok([event(timestamp=START), event(timestamp=START, metric_key="other")])
    request = pb.ListCustomerUsageEventsRequest(
        id="cus_1", aggregator_id="agg", start_date=ts(START), end_date=ts(END)
    )
    assert org_a.usage.ListCustomerUsageEvents(request).meta.total == 1
    _update(org_a, catalog_pb2.Aggregator(id="agg", event_type="other"), "event_type")
    (e,) = org_a.usage.ListCustomerUsageEvents(request).data
    assert e.name == "other"


def test_delete_aggregator(org_a: Client) -> None:
    create_aggregator(org_a, "agg_1")
    create_aggregator(org_a, "agg_2")
    create_filter(org_a, "agg_1", "flt_1")
    org_a.ingest_ok([event(timestamp=START)])
    org_a.catalog.DeleteAggregator(cpb.DeleteAggregatorRequest(id="agg_1"))
    expect_not_found(
        org_a.catalog.GetAggregator, cpb.GetAggregatorRequest(id="agg_1"), "Aggregator not found"
    )
    expect_not_found(
        org_a.catalog.DeleteAggregator, cpb.DeleteAggregatorRequest(id="agg_1"), "Aggregator not found"
    )
    expect_not_found(
        org_a.catalog.ListAggregatorFilters, cpb.ListAggregatorFiltersRequest(aggregator_id="agg_1")
    )
    assert [a.id for a in org_a.catalog.ListAggregators(cpb.ListAggregatorsRequest()).data] == ["agg_2"]
    # Events are not touched.
    assert len(org_a.all_events()) == 1
    # The id may be used again, without the old filters.
    create_aggregator(org_a, "agg_1")
    assert (
        list(
            org_a.catalog.ListAggregatorFilters(cpb.ListAggregatorFiltersRequest(aggregator_id="agg_1")).data
        )
        == []
    )
    expect_invalid(org_a.catalog.DeleteAggregator, cpb.DeleteAggregatorRequest(id=""), "id")


# =============================================================================================
# Aggregator filters
# =============================================================================================
def test_create_list_and_delete_filters(org_a: Client) -> None:
    create_aggregator(org_a, "agg")
    create_aggregator(org_a, "agg_other")
    f2 = create_filter(
        org_a, "agg", "flt_b", filt(condition("n", "gt", 3), condition("s", "is_not_null"), conditional="or")
    )
    assert (f2.id, f2.aggregator_id, f2.name) == ("flt_b", "agg", "f")
    assert f2.filter == filt(condition("n", "gt", 3), condition("s", "is_not_null"), conditional="or")
    assert f2.created_at.seconds > 0
    f1 = create_filter(org_a, "agg", "flt_a")
    generated = create_filter(org_a, "agg")
    assert generated.id and generated.id not in ("flt_a", "flt_b")
    create_filter(org_a, "agg_other", "flt_z")

    listed = org_a.catalog.ListAggregatorFilters(cpb.ListAggregatorFiltersRequest(aggregator_id="agg")).data
    assert [f.id for f in listed] == sorted(["flt_a", "flt_b", generated.id])
    assert listed[[f.id for f in listed].index("flt_a")] == f1

    # Wrong aggregator: NOT_FOUND, and the filter survives.
    expect_not_found(
        org_a.catalog.DeleteAggregatorFilter,
        cpb.DeleteAggregatorFilterRequest(aggregator_id="agg_other", id="flt_a"),
    )
    expect_not_found(
        org_a.catalog.DeleteAggregatorFilter,
        cpb.DeleteAggregatorFilterRequest(aggregator_id="agg_nope", id="flt_a"),
        "Aggregator not found",
    )
    org_a.catalog.DeleteAggregatorFilter(cpb.DeleteAggregatorFilterRequest(aggregator_id="agg", id="flt_a"))
    expect_not_found(
        org_a.catalog.DeleteAggregatorFilter,
        cpb.DeleteAggregatorFilterRequest(aggregator_id="agg", id="flt_a"),
    )
    listed = org_a.catalog.ListAggregatorFilters(cpb.ListAggregatorFiltersRequest(aggregator_id="agg")).data
    assert [f.id for f in listed] == sorted(["flt_b", generated.id])
    # A deleted filter cannot be used any more.
    org_a.ingest_ok([event(timestamp=START)])
    expect_not_found(
        org_a.usage.ListCustomerUsageEvents,
        pb.ListCustomerUsageEventsRequest(
            id="cus_1",
            aggregator_id="agg",
            start_date=ts(START),
            end_date=ts(END),
            aggregator_filter_id="flt_a",
        ),
    )


def test_create_filter_errors(org_a: Client) -> None:
    create_aggregator(org_a, "agg")
    create_filter(org_a, "agg", "flt_1")
    create = org_a.catalog.CreateAggregatorFilter
    expect_not_found(
        create,
        cpb.CreateAggregatorFilterRequest(aggregator_filter=agg_filter("agg_nope", "flt_2", filt())),
        "Aggregator not found",
    )
    expect_error(
        create,
        cpb.CreateAggregatorFilterRequest(aggregator_filter=agg_filter("agg", "flt_1", filt())),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    cases = [
        (agg_filter("agg", "flt_x"), "aggregator_filter.filter"),  # required
        (agg_filter("agg", "flt_x", filt(), name=""), "aggregator_filter.name"),
        (agg_filter("", "flt_x", filt()), "aggregator_filter.aggregator_id"),
        (agg_filter("agg", "bad id", filt()), "aggregator_filter.id"),
        (
            agg_filter("agg", "flt_x", filt(condition("r", "in", "eu"))),
            "aggregator_filter.filter.fields[0].value",
        ),
        (
            agg_filter("agg", "flt_x", filt(condition("r", "is_null", "eu"))),
            "aggregator_filter.filter.fields[0].value",
        ),
        (
            agg_filter("agg", "flt_x", filt(condition("r", "nope", 1))),
            "aggregator_filter.filter.fields[0].operator",
        ),
        (agg_filter("agg", "flt_x", filt(conditional="nor")), "aggregator_filter.filter.conditional"),
    ]
    for f, field in cases:
        expect_invalid(create, cpb.CreateAggregatorFilterRequest(aggregator_filter=f), field)
    expect_invalid(create, cpb.CreateAggregatorFilterRequest(), "aggregator_filter")
    # An explicit JSON null is "no value": accepted for is_null, stored unset.
    nulled = create(
        cpb.CreateAggregatorFilterRequest(
            aggregator_filter=agg_filter("agg", "flt_null", filt(condition("r", "is_null", null=True)))
        )
    ).aggregator_filter
    assert not nulled.filter.fields[0].HasField("value")
    org_a.catalog.DeleteAggregatorFilter(
        cpb.DeleteAggregatorFilterRequest(aggregator_id="agg", id="flt_null")
    )
    listed = org_a.catalog.ListAggregatorFilters(cpb.ListAggregatorFiltersRequest(aggregator_id="agg")).data
    assert [f.id for f in listed] == ["flt_1"]
    expect_invalid(
        org_a.catalog.ListAggregatorFilters,
        cpb.ListAggregatorFiltersRequest(aggregator_id=""),
        "aggregator_id",
    )
    expect_invalid(
        org_a.catalog.DeleteAggregatorFilter, cpb.DeleteAggregatorFilterRequest(aggregator_id="agg"), "id"
    )


def test_filter_operators_compare_by_json_type(org_a: Client) -> None:
    """Each operator through ListCustomerUsageEvents: numbers numerically, strings exactly."""
    create_aggregator(org_a, "agg")
    props = [
        {"n": 5, "s": "5", "b": True},
        {"n": 10, "s": "10", "b": False},
        {"n": 9.5, "s": "abc"},
        {"s": "ABC"},
        {},
    ]
    ids = org_a.ingest_ok(
        [event(timestamp=START + i * dt.timedelta(seconds=1), properties=p) for i, p in enumerate(props)]
    )
    cases = [
        (filt(condition("n", "equals", 5)), {0}),
        (filt(condition("n", "equals", 5.0)), {0}),
        (filt(condition("n", "equals", "5")), set()),  # a string is not the number 5
        (filt(condition("s", "equals", "5")), {0}),
        (filt(condition("s", "equals", 5)), set()),
        (filt(condition("s", "equals", "abc")), {2}),  # exact, case-sensitive
        (filt(condition("b", "equals", True)), {0}),
        (filt(condition("b", "equals", False)), {1}),
        (filt(condition("n", "gt", 9)), {1, 2}),  # numerically: 10 > 9 although "10" < "9"
        (filt(condition("n", "gte", 10)), {1}),
        (filt(condition("n", "lt", 9.5)), {0}),
        (filt(condition("n", "lte", 9.5)), {0, 2}),
        (filt(condition("n", "in", [5, 10])), {0, 1}),
        (filt(condition("s", "in", ["5", "abc", "zzz"])), {0, 2}),
        (filt(condition("n", "in", ["5"])), set()),
        (filt(condition("n", "is_null")), {3, 4}),
        (filt(condition("n", "is_not_null")), {0, 1, 2}),
        (filt(condition("n", "is_not_null"), condition("n", "not_equals", 5)), {1, 2}),
        (filt(condition("n", "is_not_null"), condition("n", "not_in", [5, 9.5])), {1}),
        (filt(condition("n", "equals", 5), condition("s", "equals", "ABC"), conditional="or"), {0, 3}),
        (filt(condition("n", "gte", 9.5), condition("s", "equals", "abc")), {2}),
        (filt(), {0, 1, 2, 3, 4}),
    ]
    for i, (flt, expected) in enumerate(cases):
        create_filter(org_a, "agg", f"flt_{i:02d}", flt)
        page = org_a.usage.ListCustomerUsageEvents(
            pb.ListCustomerUsageEventsRequest(
                id="cus_1",
                aggregator_id="agg",
                start_date=ts(START),
                end_date=ts(END),
                aggregator_filter_id=f"flt_{i:02d}",
            )
        )
        assert {e.id for e in page.data} == {ids[j] for j in expected}, (i, flt)
        assert page.meta.total == len(expected)


def test_filter_values_beyond_64_bit_integers(org_a: Client) -> None:
    # Regression: an integral filter number past int64 (json_format makes 1e19 a Python int) was
    # bound as BIGINT on PostgreSQL ("bigint out of range" -> INTERNAL).
    create_aggregator(org_a, "agg")
    ids = org_a.ingest_ok([event(timestamp=START, properties={"n": v}) for v in (1e20, 5, 1e19)])
    create_filter(org_a, "agg", "flt_gt", filt(condition("n", "gt", 1e19)))
    create_filter(org_a, "agg", "flt_eq", filt(condition("n", "equals", 1e19)))
    for filter_id, expected in (("flt_gt", [ids[0]]), ("flt_eq", [ids[2]])):
        page = org_a.usage.ListCustomerUsageEvents(
            pb.ListCustomerUsageEventsRequest(
                id="cus_1",
                aggregator_id="agg",
                start_date=ts(START),
                end_date=ts(END),
                aggregator_filter_id=filter_id,
            )
        )
        assert [e.id for e in page.data] == expected
