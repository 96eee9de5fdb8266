"""Citus-ready, proven: the schema and every statement of the storage can be distributed by organization.

docs/scaling.md says how to run this schema on Citus, each organization-scoped table distributed by
`organization_id` and colocated. That works, and sends each RPC to one shard, only while:

1. every primary key and unique index of an organization-scoped table leads with `organization_id`
   (Citus refuses a unique constraint without the distribution column; leading with it also keeps
   each organization's rows together on one node's index), and every table without the column is
   global by a decision written down in GLOBAL_TABLES;
2. every statement the storage sends to PostgreSQL ties each organization-scoped table it touches to
   one organization by equality (tests/org_predicates.py says exactly what counts), but for the
   operator commands that are global by design, named with their reason in GLOBAL_BY_DESIGN.

The first is read from the migrated schema of the real PostgreSQL server. The second runs the storage
contract suite (and the few tests that reach the storage methods it does not) in a child pytest with
tests/statement_capture.py, which records every statement psycopg sends and the code that sent it,
then parses each with PostgreSQL's own parser. Each check also runs on a case built to fail, so that
a check that cannot fail would show.
"""

from __future__ import annotations

import inspect
import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from org_predicates import ORG, problems, tables_named

from server.storage import interface

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Tables without organization_id, each a decision: a new table fails test 1 until it is either
# scoped by organization or named here with its reason; on Citus each is a reference table or local.
GLOBAL_TABLES = {
    # Alembic's record of the schema's revision: one row, read and written by `usage-service migrate`
    # and by the start-up check; it stays a local table on the Citus coordinator.
    "alembic_version": "the schema's revision",
    # The property keys rolled up for every organization (`usage-service rollups add-dimension`):
    # one small list that every ingestion joins with, so a Citus reference table (a copy per node).
    "rollup_dimensions": "the rolled-up property keys, the same for every organization",
    # One row: the commit clock's origin (migration 0009, storage/clock.py), set once by the
    # migration and read by every writer's clock statement with its organization's row: a Citus
    # reference table, so that statement stays on the organization's worker.
    "as_of_floor": "the as_of floor, the same for every organization",
}

# What the statement run covers: the storage contract suite, plus the tests that reach the storage
# methods it does not call (the aggregator values of meters.py; ExplainUsageEvent's event lookup;
# the commit clock's readers and the past reads of `as_of`),
# on PostgreSQL only (`not sqlite` keeps the postgres cases and the tests of no backend).
STATEMENT_RUN = [
    "tests/storage/test_contract.py",
    "tests/storage/test_corrections.py",
    "tests/storage/test_rollups.py",
    "tests/logic/test_aggregator_usage.py",
    "tests/rpc/test_explain.py",
    "tests/rpc/test_as_of.py",
    "tests/storage/test_partitions.py",
]

# Code of server/ whose statements touch organization-scoped tables across organizations, by
# design, with the reason. A statement is exempt when one of these is on its stack. Each must be
# seen in the run (a stale entry fails), and each is an operator's command or a migration, never
# an RPC: on Citus they run as multi-shard statements, rarely and by hand (docs/scaling.md).
GLOBAL_BY_DESIGN = {
    "server.storage.migrate:upgrade": "migrations (`usage-service migrate`): DDL and backfills of "
    "every organization's rows, run on the Citus coordinator before the tables are distributed",
    "server.storage.rollups:rebuild": "`usage-service rollups rebuild`: recomputes every "
    "organization's rollups from the events, under a SHARE lock on events",
    "server.storage.rollups:add_dimension": "`usage-service rollups add-dimension`: backfills a new "
    "rolled-up key for every organization, under a SHARE lock on events",
    "server.storage.rollups:remove_dimension": "`usage-service rollups remove-dimension`: drops a "
    "rolled-up key's rows of every organization",
    "server.storage.partitions:create_months": "`usage-service partitions` and `migrate`: creates a "
    "month's partition of events, moving that month's rows of every organization out of the default one",
    "server.storage.partitions:retention": "`usage-service retention`: removes the events, claims, "
    "voided versions and rollup rows of old months, for every organization",
}

# Methods of the storage interface the run does not reach, with why nothing is lost.
NOT_IN_RUN = {
    "ping": "the health check's SELECT 1 names no table",
    "close": "disposes of the pool: sends no statement",
}


# ---- 1. keys -------------------------------------------------------------------------------------


def _tables(conn: psycopg.Connection[Any]) -> dict[str, bool]:
    """{table of the public schema: whether it has an organization_id column}. The monthly
    partitions of events (storage/partitions.py) are parts of that table, not tables of their own:
    on Citus they are distributed with it."""
    rows = conn.execute(
        """
        SELECT c.relname, EXISTS (
                 SELECT 1 FROM pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
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


# ---- 2. statements -------------------------------------------------------------------------------

SCOPED = {"events", "voided_events", "customers", "rollup_metric_hourly", "organization_versions"}


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM events WHERE organization_id = %(o)s AND id = %(id)s",
        "SELECT * FROM events WHERE organization_id = CAST(%(o)s AS VARCHAR)",
        "SELECT * FROM events WHERE id = %(id)s AND organization_id = 'org_a'",
        # a join carries the tie across organization_id
        "SELECT * FROM events e JOIN customers c ON c.organization_id = e.organization_id "
        "AND c.id = e.customer_id WHERE e.organization_id = %(o)s",
        # a correlated subquery is tied through its enclosing level
        "SELECT * FROM events WHERE organization_id = %(o)s AND NOT EXISTS (SELECT 1 FROM voided_events v "
        "WHERE v.organization_id = events.organization_id AND v.id = events.id)",
        "WITH x AS (SELECT * FROM events WHERE organization_id = %(o)s) SELECT * FROM x",
        "SELECT hour_us %% 7 FROM rollup_metric_hourly WHERE organization_id = %(o)s",
        "INSERT INTO organization_versions (organization_id, data_version) VALUES (%(o)s, 1) "
        "ON CONFLICT (organization_id) DO UPDATE SET data_version = organization_versions.data_version + 1",
        "INSERT INTO voided_events (organization_id, id) SELECT organization_id, id FROM events "
        "WHERE organization_id = %(o)s",
        "COPY events (organization_id, id) FROM STDIN",
        "SELECT 1",
        "SELECT dim_key FROM rollup_dimensions",
    ],
)
def test_a_statement_tied_to_one_organization_passes(sql: str) -> None:
    assert problems(sql, SCOPED) == []


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("SELECT * FROM events WHERE id = %(id)s", "events: no organization_id = <value>"),
        ("SELECT * FROM events WHERE organization_id = %(o)s OR id = %(id)s", "events: no"),
        ("SELECT * FROM events WHERE organization_id IN (%(a)s, %(b)s)", "events: no"),
        ("SELECT * FROM events WHERE organization_id = customer_id", "events: no"),
        (
            "SELECT * FROM events e JOIN customers c ON c.id = e.customer_id WHERE e.organization_id = %(o)s",
            "customers AS c: no",
        ),
        (
            "SELECT * FROM events WHERE organization_id = %(o)s AND EXISTS (SELECT 1 FROM voided_events v "
            "WHERE v.id = events.id)",
            "voided_events AS v: no",
        ),
        # an inner table of the same name shadows the tied outer one
        (
            "SELECT * FROM events e WHERE e.organization_id = %(o)s AND EXISTS (SELECT 1 FROM events e "
            "WHERE e.id = 'x')",
            "events AS e: no",
        ),
        ("WITH x AS (SELECT * FROM events) SELECT * FROM x WHERE organization_id = %(o)s", "events: no"),
        ("SELECT * FROM (SELECT * FROM customers) c WHERE c.organization_id = %(o)s", "customers: no"),
        ("UPDATE organization_versions SET data_version = data_version + 1", "organization_versions: no"),
        ("DELETE FROM rollup_metric_hourly WHERE hour_us < 5", "rollup_metric_hourly: no"),
        ("INSERT INTO events (id) VALUES (%(id)s)", "INSERT into events does not set organization_id"),
        ("COPY events (id) FROM STDIN", "COPY into events does not set organization_id"),
        ("LOCK TABLE events IN SHARE MODE", "LockStmt names events without an organization"),
    ],
)
def test_a_statement_not_tied_to_one_organization_fails(sql: str, problem: str) -> None:
    found = problems(sql, SCOPED)
    assert len(found) == 1 and found[0].startswith(problem), found


def _storage_methods() -> set[str]:
    """The methods of the storage interface (interface.py's protocols), by name."""
    names = set()
    for _, cls in inspect.getmembers(interface, inspect.isclass):
        if getattr(cls, "_is_protocol", False) and cls.__module__ == interface.__name__:
            names |= {n for n, v in vars(cls).items() if inspect.isfunction(v) and not n.startswith("_")}
    return names


def _run_and_capture(log: pathlib.Path) -> tuple[list[dict[str, Any]], str]:
    """Run STATEMENT_RUN in a child pytest that records every statement: (the records, and the end of
    its output when it failed, else "")."""
    env = {**os.environ, "USAGE_STATEMENT_LOG": str(log)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "tests"), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "statement_capture", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [*command, "-k", "not sqlite", *STATEMENT_RUN], cwd=ROOT, env=env, capture_output=True, text=True
    )
    failed = "" if result.returncode == 0 else f"{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return [json.loads(line) for line in lines], failed


@pytest.mark.postgres
@pytest.mark.timeout(900)  # the child runs about 130 tests on PostgreSQL: 1-2 minutes on 2 cores
def test_every_statement_of_the_storage_names_one_organization(
    pg: psycopg.Connection[Any], tmp_path: pathlib.Path
) -> None:
    scoped = {t for t, has_org in _tables(pg).items() if has_org}
    records, run_failed = _run_and_capture(tmp_path / "statements.jsonl")
    records = [r for r in records if r["frames"]]  # the others were sent by tests and fixtures
    failures: dict[str, list[str]] = {}  # statement -> what is wrong, then who sent it
    exempt_used, touched, methods = set(), set(), set()
    for r in records:
        frames = r["frames"]
        # "server.storage.catalog_store:CatalogStore.create_customer" -> "create_customer"
        methods |= {f.partition(":")[2].rsplit(".", 1)[-1] for f in frames if f.startswith("server.storage.")}
        exempt = [f for f in frames if f in GLOBAL_BY_DESIGN]
        if exempt:
            exempt_used.update(exempt)
            continue
        touched |= tables_named(r["sql"], r["params"]) & scoped
        found = problems(r["sql"], scoped, r["params"])
        if found:
            failures.setdefault(r["sql"], found).append("sent by " + " <- ".join(frames[:4]))
    # First what the statements say (a statement without its organization may also fail a test of
    # the run, whose message says less about why), then that the run passed.
    assert not failures, "statements not tied to one organization:\n" + "\n".join(
        f"{sql[:600]}\n  " + "\n  ".join(lines) for sql, lines in failures.items()
    )
    assert not run_failed, f"the statement run failed:\n{run_failed}"
    # Not vacuous: the run reached every scoped table, every storage method and every exemption.
    assert touched == scoped, f"no checked statement touched {sorted(scoped - touched)}"
    missing = _storage_methods() - methods - set(NOT_IN_RUN)
    assert not set(NOT_IN_RUN) & methods, (
        f"reached by the run now: {set(NOT_IN_RUN) & methods}: take out of NOT_IN_RUN"
    )
    assert not missing, (
        f"storage methods the run never reached: {sorted(missing)} (cover them in STATEMENT_RUN)"
    )
    assert exempt_used == set(GLOBAL_BY_DESIGN), f"unused exemptions: {set(GLOBAL_BY_DESIGN) - exempt_used}"
