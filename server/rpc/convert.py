"""Proto <-> domain conversions: timestamps (microseconds), Struct/Value (JSON values), filters and
catalog resources. Pure functions, no logic. (Stored events travel in their wire form: server/wire.py.)"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2
from usage.v1 import catalog_pb2, events_pb2

from server.domain import Aggregator, AggregatorFilter, Condition, Customer, NewEvent, PropertyFilter
from server.wire import us_to_ts as us_to_ts  # one definition, below the adapters

_US = 1_000_000


def ts_to_us(ts: timestamp_pb2.Timestamp) -> int:
    # Sub-microsecond precision is dropped: both databases store microseconds.
    return ts.seconds * _US + ts.nanos // 1000


def bound_to_us(ts: timestamp_pb2.Timestamp) -> int:
    """A window bound in microseconds, rounded up: events are stored to the microsecond, so
    `bound <= t` and `t < bound` hold for their stored times exactly as for the nanosecond bound."""
    return ts.seconds * _US + -(-ts.nanos // 1000)


def as_of_us(request: Any) -> int | None:
    """A query's `as_of` in microseconds (None: unset), rounded down: the commit clock counts
    microseconds, so what committed at or before the nanosecond moment is what did at its microsecond."""
    return ts_to_us(request.as_of) if request.HasField("as_of") else None


def _plain(v: struct_pb2.Value) -> Any:
    """A Value as Python (numbers as float, like json_format), keeping NaN and infinities, which
    json_format refuses to convert: the checks behind this layer reject them with a field violation."""
    kind = v.WhichOneof("kind")
    if kind == "struct_value":
        return struct_to_dict(v.struct_value)
    if kind == "list_value":
        return [_plain(item) for item in v.list_value.values]
    if kind in (None, "null_value"):
        return None
    return getattr(v, kind)


def struct_to_dict(s: struct_pb2.Struct) -> dict[str, Any]:
    out = {}
    for k, v in s.fields.items():
        kind = v.WhichOneof("kind")
        # Scalars (nearly every property) read in place: a quarter off ingestion's conversion.
        out[k] = getattr(v, kind) if kind in _SCALARS else _plain(v)
    return out


_SCALARS = frozenset(("string_value", "number_value", "bool_value"))


def value_to_python(v: struct_pb2.Value, present: bool) -> Any:
    if not present or v.WhichOneof("kind") in (None, "null_value"):
        return None
    return _plain(v)


def python_to_value(v: Any) -> struct_pb2.Value:
    out = struct_pb2.Value()
    if v is None:
        out.null_value = struct_pb2.NULL_VALUE
    else:
        json_format.ParseDict(v, out)
    return out


def filter_from_proto(f: catalog_pb2.Filter) -> PropertyFilter:
    return PropertyFilter(
        conditional="or" if f.conditional == "or" else "and",
        conditions=tuple(
            Condition(c.property, c.operator, value_to_python(c.value, c.HasField("value")))  # type: ignore[arg-type]
            for c in f.fields
        ),
    )


def filter_to_proto(f: PropertyFilter) -> catalog_pb2.Filter:
    fields = []
    for c in f.conditions:
        field = catalog_pb2.FilterField(property=c.property, operator=c.operator)
        if c.value is not None:
            field.value.CopyFrom(python_to_value(c.value))
        fields.append(field)
    return catalog_pb2.Filter(conditional=f.conditional, fields=fields)


def customer_to_proto(c: Customer) -> catalog_pb2.Customer:
    return catalog_pb2.Customer(id=c.id, name=c.name, created_at=us_to_ts(c.created_at_us))


def customer_from_proto(c: catalog_pb2.Customer) -> Customer:
    return Customer(id=c.id, name=c.name)


def aggregator_from_proto(a: catalog_pb2.Aggregator) -> Aggregator:
    return Aggregator(
        id=a.id,
        name=a.name,
        event_type=a.event_type,
        operation=a.operation,  # type: ignore[arg-type]
        property=a.property,
        unit_name=a.unit_name,
        display_name_property=a.display_name_property,
        filter=filter_from_proto(a.filter) if a.HasField("filter") else None,
    )


def aggregator_to_proto(a: Aggregator) -> catalog_pb2.Aggregator:
    out = catalog_pb2.Aggregator(
        id=a.id,
        name=a.name,
        event_type=a.event_type,
        operation=a.operation,
        property=a.property,
        unit_name=a.unit_name,
        display_name_property=a.display_name_property,
        created_at=us_to_ts(a.created_at_us),
        updated_at=us_to_ts(a.updated_at_us),
    )
    if a.filter is not None:
        out.filter.CopyFrom(filter_to_proto(a.filter))
    return out


def aggregator_filter_from_proto(f: catalog_pb2.AggregatorFilter) -> AggregatorFilter:
    return AggregatorFilter(
        id=f.id, aggregator_id=f.aggregator_id, name=f.name, filter=filter_from_proto(f.filter)
    )


def aggregator_filter_to_proto(f: AggregatorFilter) -> catalog_pb2.AggregatorFilter:
    return catalog_pb2.AggregatorFilter(
        id=f.id,
        aggregator_id=f.aggregator_id,
        name=f.name,
        filter=filter_to_proto(f.filter),
        created_at=us_to_ts(f.created_at_us),
    )


def optional(msg: Any, field: str) -> Any:
    """The value of a proto3 `optional` field, or None when unset."""
    return getattr(msg, field) if msg.HasField(field) else None


def event_draft(e: events_pb2.UsageEventInput) -> NewEvent:
    """An event as the request carries it, before the checks of logic/ingest.py (an `EventDraft`)."""
    return NewEvent(
        customer_id=e.customer_id,
        metric_key=e.metric_key,
        timestamp_us=ts_to_us(e.timestamp),
        quantity=e.quantity,
        properties=struct_to_dict(e.properties),
        properties_wire=e.properties.SerializeToString(),
        # Written out, not optional(e, name): one function call fewer for each of 7 fields.
        idempotency_key=e.idempotency_key if e.HasField("idempotency_key") else None,
        product_id=e.product_id if e.HasField("product_id") else None,
        subscription_id=e.subscription_id if e.HasField("subscription_id") else None,
        price_key=e.price_key if e.HasField("price_key") else None,
        external_cost_amount=e.external_cost_amount if e.HasField("external_cost_amount") else None,
        external_cost_currency=e.external_cost_currency if e.HasField("external_cost_currency") else None,
        wallet_currency=e.wallet_currency if e.HasField("wallet_currency") else None,
    )
