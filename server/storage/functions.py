"""SQL functions whose text differs between PostgreSQL and SQLite, declared once here.

Each is a SQLAlchemy construct (`FunctionElement`) that storage code uses like any SQL expression;
the SQL each compiles to is defined beside the rest of its database's differences, in
`dialects/postgres.py` and `dialects/sqlite.py` (`@compiles` functions).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.expression import ColumnElement, FunctionElement


class _PropertyFunction(FunctionElement[Any]):
    """Base: a function of (json column, property key). A key given as text is bound as a parameter;
    it may also be a column (the rollups read keys from a table)."""

    inherit_cache = True

    def __init__(self, column: ColumnElement[Any], key: str | ColumnElement[Any]) -> None:
        super().__init__(column, sa.literal(key, sa.String) if isinstance(key, str) else key)

    def parts(self, compiler: Any, **kw: Any) -> tuple[str, str]:
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


class prop_decimal(_PropertyFunction):  # noqa: N801
    """properties[key] as an exact decimal in the type `quantity_sum` adds (NUMERIC on PostgreSQL,
    the number's JSON text on SQLite), NULL when it is not a JSON number."""

    type = sa.String()  # no result processing: summed, then read through exact_text
    inherit_cache = True


class _ExactFunction(FunctionElement[Any]):
    inherit_cache = True

    def argument(self, compiler: Any, **kw: Any) -> str:
        return str(compiler.process(list(self.clauses)[0], **kw))


class quantity_sum(_ExactFunction):  # noqa: N801
    """The exact sum of a column of decimal quantities (NUMERIC on PostgreSQL, canonical decimal
    text on SQLite), in the database's exact type."""

    type = sa.String()  # no result processing: read through exact_text
    inherit_cache = True


class exact_text(_ExactFunction):  # noqa: N801
    """An exact number (a count, or a quantity sum) as decimal text, without an exponent: what the
    API returns after trailing zeros are dropped (server/decimals.py `trim_decimal`)."""

    type = sa.String()
    inherit_cache = True


class exact_order(_ExactFunction):  # noqa: N801
    """An exact number as a sort key that orders numerically (SQLite keeps quantity sums as text)."""

    type = sa.String()
    inherit_cache = True


class text_order(_ExactFunction):  # noqa: N801
    """A text column as a sort key that orders by code point, as Python sorts strings."""

    type = sa.String()
    inherit_cache = True


class month_start_day(_ExactFunction):  # noqa: N801
    """The day number (days since 1970-01-01) of the first day of the calendar month holding a day
    number: the key of a month bucket, computed from the local day of an event."""

    type = sa.BigInteger()
    inherit_cache = True
