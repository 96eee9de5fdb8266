"""Citus-ready, proven: the schema can be distributed by organization.

docs/scaling.md says how to run this schema on Citus, each organization-scoped table distributed by
`organization_id` and colocated. That works only while every primary key and unique index of an
organization-scoped table leads with `organization_id` (Citus refuses a unique constraint without the
distribution column; leading with it also keeps each organization's rows together on one node's
index), and every table without the column is global by a decision written down in GLOBAL_TABLES.

It is read from the migrated schema of the real PostgreSQL server, and the check also runs on tables
built to fail it, so that a check that cannot fail would show.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

ORG = "organization_id"


# Tables without organization_id, each a decision: a new table fails test 1 until it is either
# scoped by organization or named here with its reason. Both are reference tables or local on Citus.
GLOBAL_TABLES = {
    # Alembic's record of the schema's revision: one row, read and written by `usage-service migrate`
    # and by the start-up check; it stays a local table on the Citus coordinator.
    "alembic_version": "the schema's revision",
    # The property keys rolled up for every organization (`usage-service rollups add-dimension`):
    # one small list that every ingestion joins with, so a Citus reference table (a copy per node).
    "rollup_dimensions": "the rolled-up property keys, the same for every organization",
}

# ---- 1. keys -------------------------------------------------------------------------------------


def _tables(conn: psycopg.Connection[Any]) -> dict[str, bool]:
    """{table of the public schema: whether it has an organization_id column}."""
    rows = conn.execute(
        """
        SELECT c.relname, EXISTS (
                 SELECT 1 FROM pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
        """,
        [ORG],
    ).fetchall()
    return {name: has_org for name, has_org in rows}


def key_problems(conn: psycopg.Connection[Any]) -> list[str]:
    """What in the schema of `conn` keeps it from being distributed by organization_id."""
    found = []
    tables = _tables(conn)
    for table, has_org in sorted(tables.items()):
        if not has_org and table not in GLOBAL_TABLES:
            found.append(f"{table}: no {ORG} and not in GLOBAL_TABLES (scope it, or say why it is global)")
        if has_org and table in GLOBAL_TABLES:
            found.append(f"{table}: has {ORG} but is in GLOBAL_TABLES")
    found += [f"{t}: in GLOBAL_TABLES but not in the schema" for t in GLOBAL_TABLES if t not in tables]
    # Every unique index (primary keys and unique constraints are ones) of a scoped table, with its
    # first key column; an expression as first key has attnum 0, so no name.
    rows = conn.execute(
        """
        SELECT t.relname, i.relname, a.attname
        FROM pg_index x
        JOIN pg_class t ON t.oid = x.indrelid
        JOIN pg_namespace n ON n.oid = t.relnamespace
        JOIN pg_class i ON i.oid = x.indexrelid
        LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = x.indkey[0]
        WHERE n.nspname = 'public' AND (x.indisunique OR x.indisprimary)
        ORDER BY 1, 2
        """
    ).fetchall()
    for table, index, first in rows:
        if tables.get(table) and first != ORG:
            found.append(f"{table}: unique index {index} leads with {first or 'an expression'}, not {ORG}")
    return found


@pytest.fixture
def pg(pg_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A psycopg connection to a fresh migrated PostgreSQL database."""
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        yield conn


@pytest.mark.postgres
def test_every_primary_key_and_unique_index_leads_with_organization_id(pg: psycopg.Connection[Any]) -> None:
    assert key_problems(pg) == []
    # Not vacuous: the scoped tables are the ones the storage uses, each with its primary key.
    scoped = {t for t, has_org in _tables(pg).items() if has_org}
    assert {"events", "idempotency_keys", "customers", "rollup_metric_hourly", "voided_events"} <= scoped
    primary = pg.execute(
        "SELECT count(*) FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid "
        "WHERE x.indisprimary AND t.relname = ANY(%s)",
        [sorted(scoped)],
    ).fetchone()
    assert primary == (len(scoped),)


@pytest.mark.postgres
def test_the_key_check_finds_a_key_without_organization_id_and_an_undecided_table(
    pg: psycopg.Connection[Any],
) -> None:
    pg.execute(f"CREATE TABLE probe_scoped ({ORG} text, id text PRIMARY KEY)")
    pg.execute(f"CREATE TABLE probe_unique ({ORG} text, id text, PRIMARY KEY ({ORG}, id))")
    pg.execute("CREATE UNIQUE INDEX probe_unique_by_id ON probe_unique (id, organization_id)")
    pg.execute(f"CREATE UNIQUE INDEX probe_unique_by_expr ON probe_unique (lower(id), {ORG})")
    pg.execute("CREATE TABLE probe_global (id text PRIMARY KEY)")
    assert key_problems(pg) == [
        "probe_global: no organization_id and not in GLOBAL_TABLES (scope it, or say why it is global)",
        "probe_scoped: unique index probe_scoped_pkey leads with id, not organization_id",
        "probe_unique: unique index probe_unique_by_expr leads with an expression, not organization_id",
        "probe_unique: unique index probe_unique_by_id leads with id, not organization_id",
    ]
