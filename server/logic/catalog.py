"""Catalog rules: customers, aggregators and aggregator filters, with the checks proto constraints
cannot express (filter operator/value agreement, update masks, existence of the parent)."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from server.deadline import Deadline
from server.domain import Aggregator, AggregatorFilter, Condition, Customer, PropertyFilter
from server.errors import FieldViolation, InvalidArgument, NotFound
from server.logic.cursors import MALFORMED, CursorCodec, fingerprint
from server.storage.interface import CatalogStorage

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
MAX_FILTERS_PER_AGGREGATOR = 100
# A filter's conditions as JSON (what is stored and answered), as event properties are bounded: so an
# aggregator, a page of 100 of them, and the 100 filters of an aggregator stay small answers.
MAX_FILTER_BYTES = 16 * 1024
MUTABLE_AGGREGATOR_FIELDS = (
    "name",
    "event_type",
    "operation",
    "property",
    "unit_name",
    "display_name_property",
    "filter",
)
_SCALAR_OPERATORS = {"equals", "not_equals"}
_LIST_OPERATORS = {"in", "not_in"}
_ORDER_OPERATORS = {"gt", "gte", "lt", "lte"}
_NULL_OPERATORS = {"is_null", "is_not_null"}


def check_filter(flt: PropertyFilter, field: str) -> None:
    """Operators and values must agree: lists for in/not_in, no value for is_null, and so on."""
    violations = []
    for i, c in enumerate(flt.conditions):
        path = f"{field}.fields[{i}].value"
        v = c.value
        if c.operator in _NULL_OPERATORS and v is not None:
            violations.append(FieldViolation(path, f"{c.operator} takes no value"))
        elif c.operator in _SCALAR_OPERATORS and not _is_scalar(v, allow_null=False):
            # A missing value is more likely a client's mistake than a wish for is_null.
            problem = f"{c.operator} takes a string, number or boolean (is_null matches absent or null)"
            violations.append(FieldViolation(path, problem))
        elif c.operator in _ORDER_OPERATORS and not (isinstance(v, str) or _is_number(v)):
            violations.append(FieldViolation(path, f"{c.operator} takes a string or a number"))
        elif c.operator in _LIST_OPERATORS and not (
            isinstance(v, list) and 0 < len(v) <= 100 and all(_is_scalar(x, allow_null=False) for x in v)
        ):
            violations.append(
                FieldViolation(path, f"{c.operator} takes a list of 1-100 strings, numbers or booleans")
            )
    if not violations and _json_size(flt) > MAX_FILTER_BYTES:
        violations.append(FieldViolation(field, f"at most {MAX_FILTER_BYTES} bytes as JSON"))
    if violations:
        raise InvalidArgument.of(violations)


def _json_size(flt: PropertyFilter) -> int:
    fields = [{"property": c.property, "operator": c.operator, "value": c.value} for c in flt.conditions]
    document = {"conditional": flt.conditional, "fields": fields}
    return len(json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode())


def _is_number(v: Any) -> bool:
    # Finite only: NaN and infinities have no JSON form to store or compare with.
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _is_scalar(v: Any, allow_null: bool) -> bool:
    return isinstance(v, str | bool) or _is_number(v) or (allow_null and v is None)


class Catalog:
    def __init__(self, storage: CatalogStorage, cursors: CursorCodec) -> None:
        self._storage = storage
        self._cursors = cursors

    # ---- customers --------------------------------------------------------------------------
    def create_customer(self, org: str, customer: Customer, deadline: Deadline | None = None) -> Customer:
        return self._storage.create_customer(org, customer, deadline)

    def get_customer(self, org: str, customer_id: str, deadline: Deadline | None = None) -> Customer:
        found = self._storage.get_customer(org, customer_id, deadline)
        if found is None:
            raise NotFound("Customer not found", resource="customer")
        return found

    def list_customers(
        self, org: str, limit: int | None, cursor: str, deadline: Deadline | None = None
    ) -> tuple[list[Customer], str]:
        bound = fingerprint(org, "ListCustomers", None)
        after = self._after(cursor, bound)
        size = min(limit or DEFAULT_LIMIT, MAX_LIMIT)
        rows = self._storage.list_customers(org, after, size + 1, deadline)
        return rows[:size], self._next(bound, rows, size)

    # ---- aggregators ------------------------------------------------------------------------
    def create_aggregator(
        self, org: str, aggregator: Aggregator, deadline: Deadline | None = None
    ) -> Aggregator:
        if aggregator.filter is not None:
            check_filter(aggregator.filter, "aggregator.filter")
        return self._storage.create_aggregator(org, aggregator, deadline)

    def get_aggregator(self, org: str, aggregator_id: str, deadline: Deadline | None = None) -> Aggregator:
        found = self._storage.get_aggregator(org, aggregator_id, deadline)
        if found is None:
            raise NotFound("Aggregator not found", resource="aggregator")
        return found

    def list_aggregators(
        self, org: str, limit: int | None, cursor: str, deadline: Deadline | None = None
    ) -> tuple[list[Aggregator], str]:
        bound = fingerprint(org, "ListAggregators", None)
        after = self._after(cursor, bound)
        size = min(limit or DEFAULT_LIMIT, MAX_LIMIT)
        rows = self._storage.list_aggregators(org, after, size + 1, deadline)
        return rows[:size], self._next(bound, rows, size)

    def update_aggregator(
        self, org: str, changes: Aggregator, mask: list[str], deadline: Deadline | None = None
    ) -> Aggregator:
        unknown = [p for p in mask if p not in MUTABLE_AGGREGATOR_FIELDS]
        if unknown:
            raise InvalidArgument.field(
                "update_mask",
                f"cannot update {unknown[0][:64]!r}; updatable: {', '.join(MUTABLE_AGGREGATOR_FIELDS)}",
            )
        paths = mask or list(MUTABLE_AGGREGATOR_FIELDS)

        def change(current: Aggregator) -> Aggregator:  # runs under the aggregator's lock
            updated = dataclasses.replace(current, **{p: getattr(changes, p) for p in paths})
            for field in ("name", "event_type"):
                if not getattr(updated, field):
                    raise InvalidArgument.field(f"aggregator.{field}", "must not be empty")
            if updated.operation not in ("count", "sum"):
                raise InvalidArgument.field("aggregator.operation", "must be count or sum")
            if updated.filter is not None:
                check_filter(updated.filter, "aggregator.filter")
            return updated

        stored = self._storage.update_aggregator(org, changes.id, change, deadline)
        if stored is None:
            raise NotFound("Aggregator not found", resource="aggregator")
        return stored

    def delete_aggregator(self, org: str, aggregator_id: str, deadline: Deadline | None = None) -> None:
        if not self._storage.delete_aggregator(org, aggregator_id, deadline):
            raise NotFound("Aggregator not found", resource="aggregator")

    # ---- aggregator filters -----------------------------------------------------------------
    def create_aggregator_filter(
        self, org: str, flt: AggregatorFilter, deadline: Deadline | None = None
    ) -> AggregatorFilter:
        check_filter(flt.filter, "aggregator_filter.filter")

        def admit(count: int) -> None:  # runs under the aggregator's lock
            if count >= MAX_FILTERS_PER_AGGREGATOR:
                raise InvalidArgument.field(
                    "aggregator_filter.aggregator_id",
                    f"an aggregator has at most {MAX_FILTERS_PER_AGGREGATOR} filters",
                )

        created = self._storage.create_aggregator_filter(org, flt, admit, deadline)
        if created is None:
            raise NotFound("Aggregator not found", resource="aggregator")
        return created

    def list_aggregator_filters(
        self, org: str, aggregator_id: str, deadline: Deadline | None = None
    ) -> list[AggregatorFilter]:
        self.get_aggregator(org, aggregator_id, deadline)
        return self._storage.list_aggregator_filters(org, aggregator_id, deadline)

    def delete_aggregator_filter(
        self, org: str, aggregator_id: str, filter_id: str, deadline: Deadline | None = None
    ) -> None:
        self.get_aggregator(org, aggregator_id, deadline)
        if not self._storage.delete_aggregator_filter(org, aggregator_id, filter_id, deadline):
            raise NotFound("Aggregator filter not found", resource="aggregator_filter")

    # ---- paging -----------------------------------------------------------------------------
    def _after(self, cursor: str, bound: str) -> str | None:
        if not cursor:
            return None
        position = self._cursors.decode(cursor, bound)
        if len(position) != 1 or not isinstance(position[0], str):
            raise InvalidArgument.field("cursor", MALFORMED)
        return position[0]

    def _next(self, bound: str, rows: list[Any], size: int) -> str:
        return self._cursors.encode(bound, [rows[size - 1].id]) if len(rows) > size else ""


__all__ = ["Catalog", "Condition", "check_filter"]
