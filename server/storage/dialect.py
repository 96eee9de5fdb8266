"""The only place where PostgreSQL and SQLite SQL differ: a few custom constructs, each compiled per
dialect with `@compiles`. Everything else in storage is dialect-neutral SQLAlchemy Core.

Known differences that remain (and are documented in README): array-valued dimension keys, and numbers
of 2**53 or more, group under each database's own JSON text of the value (`[1,2]` / `1e+20` on SQLite,
`[1, 2]` / `100000000000000000000` on PostgreSQL).

Quantities are summed exactly on both: PostgreSQL as NUMERIC; SQLite, which has no decimal type, with
`decimal_sum`, an aggregate function (`DecimalSum`) that engine.py registers on each connection. It
runs inside SQLite's own GROUP BY, one call per summed row (about 1 us each: a 1M-event sum takes
~2.7x the time of an inexact SUM(CAST(quantity AS REAL)), which would bill 0.1 + 0.2 as
0.30000000000000004).
"""

from __future__ import annotations

import decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement


class _PropertyFunction(FunctionElement[Any]):
    """Base: a function of (json column, property key). A key given as text is bound as a parameter;
    it may also be a column (the rollups read keys from a table)."""

    inherit_cache = True

    def __init__(self, column: ColumnElement[Any], key: str | ColumnElement[Any]) -> None:
        super().__init__(column, sa.literal(key, sa.String) if isinstance(key, str) else key)

    def _parts(self, compiler: Any, **kw: Any) -> tuple[str, str]:
        column, key = list(self.clauses)
        return compiler.process(column, **kw), compiler.process(key, **kw)


class prop_type(_PropertyFunction):  # noqa: N801 (SQL function style)
    """The JSON type of properties[key]: 'string', 'number', 'boolean', 'null', 'array', 'object',
    or NULL when the key is absent."""

    type = sa.String()
    inherit_cache = True


class prop_text(_PropertyFunction):  # noqa: N801
    """properties[key] as text: strings as they are, numbers and booleans as their JSON text."""

    type = sa.String()
    inherit_cache = True


class prop_number(_PropertyFunction):  # noqa: N801
    """properties[key] as a number, NULL when it is not a JSON number."""

    type = sa.Numeric()
    inherit_cache = True


class quantity_sum(FunctionElement[Any]):  # noqa: N801
    """The exact sum of a column of decimal quantities: a Decimal (PostgreSQL) or its text (SQLite),
    which `float()` turns into the nearest double either way."""

    type = sa.String()  # no result processing: the driver's Decimal or str is kept as it is
    inherit_cache = True


class DecimalSum:
    """SQLite aggregate `decimal_sum(text)`: the exact sum of canonical decimal strings, as text."""

    # 24 integer and 12 fractional digits per quantity, and room for billions of them.
    CONTEXT = decimal.Context(prec=60, traps=[decimal.Inexact, decimal.InvalidOperation])

    def __init__(self) -> None:
        self.total = decimal.Decimal(0)

    def step(self, value: str | None) -> None:
        if value is not None:
            self.total = self.CONTEXT.add(self.total, decimal.Decimal(value))

    def finalize(self) -> str:
        return str(self.total)


def _sqlite_path(key_sql: str) -> str:
    # '$."key"' addresses keys containing dots; keys are [A-Za-z0-9_.-] (validated), so no escaping.
    return f"('$.\"' || {key_sql} || '\"')"


@compiles(prop_type, "postgresql")
def _prop_type_pg(element: prop_type, compiler: Any, **kw: Any) -> str:
    col, key = element._parts(compiler, **kw)
    return f"jsonb_typeof({col} -> {key})"


@compiles(prop_type, "sqlite")
def _prop_type_sqlite(element: prop_type, compiler: Any, **kw: Any) -> str:
    col, key = element._parts(compiler, **kw)
    t = f"json_type({col}, {_sqlite_path(key)})"
    return (
        f"(CASE {t} WHEN 'text' THEN 'string' WHEN 'integer' THEN 'number' WHEN 'real' THEN 'number' "
        f"WHEN 'true' THEN 'boolean' WHEN 'false' THEN 'boolean' ELSE {t} END)"
    )


@compiles(prop_text, "postgresql")
def _prop_text_pg(element: prop_text, compiler: Any, **kw: Any) -> str:
    col, key = element._parts(compiler, **kw)
    # "C" collation: strings compare exactly, byte by byte, whatever the database's locale.
    return f'(({col} ->> {key}) COLLATE "C")'


@compiles(prop_text, "sqlite")
def _prop_text_sqlite(element: prop_text, compiler: Any, **kw: Any) -> str:
    col, key = element._parts(compiler, **kw)
    path = _sqlite_path(key)
    # `->` yields the JSON text as stored (numbers keep every digit, booleans read true/false);
    # json_extract would round reals to 15 digits and turn booleans into 0/1.
    return (
        f"(CASE json_type({col}, {path}) WHEN 'text' THEN json_extract({col}, {path}) "
        f"WHEN 'null' THEN NULL ELSE ({col} -> {path}) END)"
    )


@compiles(prop_number, "postgresql")
def _prop_number_pg(element: prop_number, compiler: Any, **kw: Any) -> str:
    col, key = element._parts(compiler, **kw)
    return f"(CASE WHEN jsonb_typeof({col} -> {key}) = 'number' THEN ({col} ->> {key})::numeric END)"


@compiles(prop_number, "sqlite")
def _prop_number_sqlite(element: prop_number, compiler: Any, **kw: Any) -> str:
    col, key = element._parts(compiler, **kw)
    path = _sqlite_path(key)
    return f"(CASE WHEN json_type({col}, {path}) IN ('integer', 'real') THEN json_extract({col}, {path}) END)"


@compiles(quantity_sum, "postgresql")
def _quantity_sum_pg(element: quantity_sum, compiler: Any, **kw: Any) -> str:
    return f"sum({compiler.process(list(element.clauses)[0], **kw)})"


@compiles(quantity_sum, "sqlite")
def _quantity_sum_sqlite(element: quantity_sum, compiler: Any, **kw: Any) -> str:
    return f"decimal_sum({compiler.process(list(element.clauses)[0], **kw)})"
