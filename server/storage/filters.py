"""Compile property filters (aggregator filters, ListCustomerUsageEvents) to SQL expressions.

Values compare by JSON type: a string condition only matches string properties (exactly), a number
condition only numbers (numerically), a boolean only booleans. `not_equals` and `not_in` also match
events where the property is absent. Nothing here is evaluated in Python.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.expression import ColumnElement

from server.domain import Condition, PropertyFilter
from server.storage.functions import prop_number, prop_text, prop_type

_INT64 = 2**63


def _bindable(value: Any) -> Any:
    # Integers past 64 bits do not bind as BIGINT parameters: compare them as doubles, which is
    # what JSON numbers are anyway.
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _INT64:
        return float(value)
    return value


def compile_filter(column: ColumnElement[Any], flt: PropertyFilter) -> ColumnElement[bool]:
    """One boolean SQL expression for a whole filter."""
    if not flt.conditions:
        return sa.true()
    parts = [_condition(column, c) for c in flt.conditions]
    return sa.or_(*parts) if flt.conditional == "or" else sa.and_(*parts)


def holds(expr: ColumnElement[bool]) -> ColumnElement[bool]:
    """A filter's or condition's verdict as true/false: unknown (an absent property compared) is
    false, as a WHERE clause treats it (ExplainUsageEvent shows verdicts the pages apply)."""
    return sa.func.coalesce(expr, sa.false())


def compile_condition(column: ColumnElement[Any], condition: Condition) -> ColumnElement[bool]:
    """One condition of a filter, compiled as compile_filter compiles it within the filter."""
    return _condition(column, condition)


def _equals(column: ColumnElement[Any], key: str, value: Any) -> ColumnElement[bool]:
    if value is None:
        return _is_null(column, key)
    if isinstance(value, bool):
        return sa.and_(prop_type(column, key) == "boolean", prop_text(column, key) == str(value).lower())
    if isinstance(value, int | float):
        return sa.and_(prop_type(column, key) == "number", prop_number(column, key) == _bindable(value))
    return sa.and_(prop_type(column, key) == "string", prop_text(column, key) == value)


def _is_null(column: ColumnElement[Any], key: str) -> ColumnElement[bool]:
    t = prop_type(column, key)
    return sa.or_(t.is_(None), t == "null")


def _negate(expr: ColumnElement[bool]) -> ColumnElement[bool]:
    # SQL NOT of NULL is NULL: treat "unknown" (absent property) as "did not match", then negate.
    return sa.not_(holds(expr))


def _compare(column: ColumnElement[Any], key: str, op: str, value: Any) -> ColumnElement[bool]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        left: ColumnElement[Any] = prop_number(column, key)
        kind = "number"
        value = _bindable(value)
    else:
        left = prop_text(column, key)
        kind = "string"
    ops = {"gt": left > value, "gte": left >= value, "lt": left < value, "lte": left <= value}
    return sa.and_(prop_type(column, key) == kind, ops[op])


def _condition(column: ColumnElement[Any], c: Condition) -> ColumnElement[bool]:
    key = c.property
    if c.operator == "is_null":
        return _is_null(column, key)
    if c.operator == "is_not_null":
        return _negate(_is_null(column, key))
    if c.operator == "equals":
        return _equals(column, key, c.value)
    if c.operator == "not_equals":
        return _negate(_equals(column, key, c.value))
    if c.operator == "in":
        return sa.or_(*[_equals(column, key, v) for v in c.value])
    if c.operator == "not_in":
        return _negate(sa.or_(*[_equals(column, key, v) for v in c.value]))
    return _compare(column, key, c.operator, c.value)
