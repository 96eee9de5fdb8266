"""Catalog rules: customers, aggregators and aggregator filters, with the checks proto constraints
cannot express (filter operator/value agreement, update masks, existence of the parent)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from server.domain import Aggregator, AggregatorFilter, Condition, Customer, PropertyFilter
from server.errors import FieldViolation, InvalidArgument, NotFound
from server.logic.cursors import MALFORMED, CursorCodec, fingerprint
from server.storage.interface import CatalogStorage

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
MAX_FILTERS_PER_AGGREGATOR = 100
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
    if violations:
        raise InvalidArgument.of(violations)


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
    def create_customer(self, org: str, customer: Customer) -> Customer:
        return self._storage.create_customer(org, customer)

    def get_customer(self, org: str, customer_id: str) -> Customer:
        found = self._storage.get_customer(org, customer_id)
        if found is None:
            raise NotFound("Customer not found", resource="customer")
        return found

    def list_customers(self, org: str, limit: int | None, cursor: str) -> tuple[list[Customer], str]:
        bound = fingerprint(org, "ListCustomers", None)
        after = self._after(cursor, bound)
        size = min(limit or DEFAULT_LIMIT, MAX_LIMIT)
        rows = self._storage.list_customers(org, after, size + 1)
        return rows[:size], self._next(bound, rows, size)

    # ---- aggregators ------------------------------------------------------------------------
    def create_aggregator(self, org: str, aggregator: Aggregator) -> Aggregator:
        if aggregator.filter is not None:
            check_filter(aggregator.filter, "aggregator.filter")
        return self._storage.create_aggregator(org, aggregator)

    def get_aggregator(self, org: str, aggregator_id: str) -> Aggregator:
        found = self._storage.get_aggregator(org, aggregator_id)
        if found is None:
            raise NotFound("Aggregator not found", resource="aggregator")
        return found

    def list_aggregators(self, org: str, limit: int | None, cursor: str) -> tuple[list[Aggregator], str]:
        bound = fingerprint(org, "ListAggregators", None)
        after = self._after(cursor, bound)
        size = min(limit or DEFAULT_LIMIT, MAX_LIMIT)
        rows = self._storage.list_aggregators(org, after, size + 1)
        return rows[:size], self._next(bound, rows, size)

    def update_aggregator(self, org: str, changes: Aggregator, mask: list[str]) -> Aggregator:
        unknown = [p for p in mask if p not in MUTABLE_AGGREGATOR_FIELDS]
        if unknown:
            raise InvalidArgument.field(
                "update_mask",
                f"cannot update {unknown[0][:64]!r}; updatable: {', '.join(MUTABLE_AGGREGATOR_FIELDS)}",
            )
        current = self.get_aggregator(org, changes.id)
        paths = mask or list(MUTABLE_AGGREGATOR_FIELDS)
        updated = dataclasses.replace(current, **{p: getattr(changes, p) for p in paths})
        for field in ("name", "event_type"):
            if not getattr(updated, field):
                raise InvalidArgument.field(f"aggregator.{field}", "must not be empty")
        if updated.operation not in ("count", "sum"):
            raise InvalidArgument.field("aggregator.operation", "must be count or sum")
        if updated.filter is not None:
            check_filter(updated.filter, "aggregator.filter")
        stored = self._storage.update_aggregator(org, updated)
        if stored is None:
            raise NotFound("Aggregator not found", resource="aggregator")
        return stored

    def delete_aggregator(self, org: str, aggregator_id: str) -> None:
        if not self._storage.delete_aggregator(org, aggregator_id):
            raise NotFound("Aggregator not found", resource="aggregator")

    # ---- aggregator filters -----------------------------------------------------------------
    def create_aggregator_filter(self, org: str, flt: AggregatorFilter) -> AggregatorFilter:
        check_filter(flt.filter, "aggregator_filter.filter")
        self.get_aggregator(org, flt.aggregator_id)
        if len(self._storage.list_aggregator_filters(org, flt.aggregator_id)) >= MAX_FILTERS_PER_AGGREGATOR:
            raise InvalidArgument.field(
                "aggregator_filter.aggregator_id",
                f"an aggregator has at most {MAX_FILTERS_PER_AGGREGATOR} filters",
            )
        return self._storage.create_aggregator_filter(org, flt)

    def list_aggregator_filters(self, org: str, aggregator_id: str) -> list[AggregatorFilter]:
        self.get_aggregator(org, aggregator_id)
        return self._storage.list_aggregator_filters(org, aggregator_id)

    def delete_aggregator_filter(self, org: str, aggregator_id: str, filter_id: str) -> None:
        self.get_aggregator(org, aggregator_id)
        if not self._storage.delete_aggregator_filter(org, aggregator_id, filter_id):
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
