"""Query plans (PostgreSQL): every statement a query RPC runs is EXPLAINed on a data set big enough
for the planner to prefer indexes (200k events, one organization holding most of them, analyzed and
vacuumed), and no plan may read the events table with a sequential scan where an index or a rollup
must serve it.

The statements are the ones SqlStorage really sends (captured from the engine), EXPLAINed with the
same parameters. The one deliberate exception is a dimension group-by over a whole organization
with no rollup for its key: it reads most of that organization's events whatever the plan, and the
planner may choose a (parallel) sequential scan for it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import psycopg.sql
import pytest
import sqlalchemy as sa
from pg_server import PgServer
from stored_events import CustomerEventQuery, customer_events

from server.deadline import Deadline
from server.domain import AggregateQuery, Condition, EventFilters, Meter, PropertyFilter
from server.logic import buckets
from server.storage import meters, partitions, rollups
from server.storage.dialects import dialect_of
from server.storage.engine import make_engine
from server.storage.partitions import DEFAULT_PARTITION, Month
from server.storage.sql_storage import SqlStorage

pytestmark = pytest.mark.postgres

BIG = "org_big"
EVENTS = 200_000
END = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
END_US = buckets.to_us(END)
DAY_US = 86_400_000_000

# Server-side generation: one INSERT .. SELECT, no round trips. 60% of events in BIG; customers
# skewed (cus_0..cus_9 produce most); 20 metrics; product on 1/7, subscription on 1/11 of them.
LOAD = f"""
INSERT INTO events (organization_id, id, customer_id, metric_key, timestamp_us, ingested_at_us,
                    quantity, product_id, subscription_id, properties, wire)
SELECT CASE WHEN g % 10 < 6 THEN '{BIG}' ELSE 'org_' || (g % 4) END,
       'evt_' || md5(g::text),
       'cus_' || CASE WHEN g % 3 = 0 THEN g % 10 ELSE g % 2000 END,
       'm' || (g % 20),
       {END_US} - (g::bigint * 38880000) % ({90 * DAY_US}::bigint) - 1,
       {END_US},
       (g % 100) / 10.0,
       CASE WHEN g % 7 = 0 THEN 'prod_' || (g % 5) END,
       CASE WHEN g % 11 = 0 THEN 'sub_' || (g % 300) END,
       jsonb_build_object('region', 'r' || (g % 6), 'endpoint', '/e' || (g % 50), 'method', 'GET'),
       ''::bytea  -- plans only: no response is read from these events
FROM generate_series(1, {EVENTS}) AS g
"""


# The partitions of events that the loaded data set leaves empty.
EMPTY: set[str] = set()


@pytest.fixture(scope="module")
def planned(pg_server: PgServer, _pg_template: str) -> Iterator[tuple[SqlStorage, list[tuple[str, Any]]]]:
    """Storage on the loaded database (one per module: the tests only read), and the list its
    statements are captured into."""
    db_url = pg_server.create_database(template=_pg_template)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(LOAD.replace("%", "%%"))
        # The rows landed in the default partition (the template has the months around today):
        # March to May 2026 get their own, as `usage-service partitions --split-default` does.
        assert set(partitions.split_default(conn)) == {Month(2026, 3), Month(2026, 4), Month(2026, 5)}
        rollups.rebuild(conn)
        rollups.add_dimension(conn, "region", END_US)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
        for name in [m.partition for m in dialect_of(engine).month_partitions(conn)] + [DEFAULT_PARTITION]:
            if not conn.exec_driver_sql(f"SELECT EXISTS (SELECT FROM {name})").scalar_one():
                EMPTY.add(name)
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            captured.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        yield SqlStorage(engine), captured
    finally:
        engine.dispose()
        pg_server.drop_database(db_url.rsplit("/", 1)[1])


def _plans(storage: SqlStorage, statements: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    plans = []
    raw = storage.engine.raw_connection()
    try:
        cur = raw.cursor()
        for statement, parameters in statements:
            cur.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
            (doc,) = cur.fetchone()
            plans.append((doc if isinstance(doc, list) else json.loads(doc))[0]["Plan"])
    finally:
        raw.close()
    return plans


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a plan. A scan of a partition of events (storage/partitions.py) reads as one of
    `events`, the partition named in "Partition"."""
    name = plan.get("Relation Name", "")
    if name == DEFAULT_PARTITION or re.fullmatch(r"events_y\d{4}m\d{2}", name):
        # An empty partition (the months ahead, the default one) is scanned as the planner likes:
        # reading nothing costs nothing, and once it holds rows its statistics make it choose again.
        plan["Partition"], plan["Relation Name"] = (
            name,
            "events" if name not in EMPTY else "an empty partition",
        )
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _scans(
    storage: SqlStorage, captured: list[tuple[str, Any]], call: Callable[[], Any]
) -> list[tuple[str, str]]:
    """(table, scan node type) of every table scan in the plans of the statements `call` runs."""
    captured.clear()
    call()
    assert captured, "the call ran no SELECT"
    return [
        (n["Relation Name"], n["Node Type"])
        for p in _plans(storage, captured)
        for n in _nodes(p)
        if "Relation Name" in n
    ]


def _scans_of_events(
    storage: SqlStorage, captured: list[tuple[str, Any]], call: Callable[[], Any]
) -> list[str]:
    return [node for table, node in _scans(storage, captured, call) if table == "events"]


# A sort the planner expects to hold more rows than this is one of a listing's events, where the
# listing's index must give the order. Below it, sorting is its own cheaper choice: a light
# customer's few events in each month's partition, found and sorted, rather than merged in order
# from every month's index.
SMALL_SORT_ROWS = 1000


def _big_sorts(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        n
        for n in nodes
        if n["Node Type"] in ("Sort", "Incremental Sort") and n["Plan Rows"] > SMALL_SORT_ROWS
    ]


# Tables big enough that a sequential scan of one is a missing index (the catalog's are not).
BIG_TABLES = {"events", "rollup_metric_hourly", "rollup_dimension_hourly", "rollup_customer_hourly"}


def _aggregate(
    bucket: str, days: int, group_by: str, metric: str = "count", zone: str = "UTC", **filters: Any
) -> AggregateQuery:
    tz = ZoneInfo(zone)
    since, until = END - dt.timedelta(days=days), END - dt.timedelta(minutes=17)  # `until` = now: ragged
    _, since = buckets.plan(bucket, tz, since, until, 10_000)
    return AggregateQuery(
        buckets.to_us(since),
        buckets.to_us(until),
        bucket,
        buckets.offset_segments(tz, since, until),  # type: ignore[arg-type]
        metric,
        group_by,
        EventFilters(**filters),  # type: ignore[arg-type]
    )


WINDOW = {"occurred_after_us": END_US - 7 * DAY_US, "occurred_before_us": END_US - 6 * DAY_US}
LISTINGS = {
    "none": EventFilters(),
    "customer": EventFilters(customer_id="cus_1234"),
    "heavy customer": EventFilters(customer_id="cus_3"),
    "metric": EventFilters(metric_keys=("m3",)),
    "metrics": EventFilters(metric_keys=("m3", "m4")),
    "customer+metric": EventFilters(customer_id="cus_1234", metric_keys=("m14",)),
    "product": EventFilters(product_id="prod_2"),
    "subscription": EventFilters(subscription_id="sub_2"),
    "window": EventFilters(**WINDOW),
    "customer+window": EventFilters(customer_id="cus_3", **WINDOW),
}


@pytest.mark.parametrize("name", ["none", "customer", "metrics", "product", "customer+window"])
def test_export_oldest_first_reads_the_same_indexes_backwards(
    planned: tuple[SqlStorage, list[tuple[str, Any]]], name: str
) -> None:
    """ExportUsageEvents' oldest-first statements, as of the export's start (storage/clock.py): the
    listing's index, scanned the other way, with no sort of the matching events (only the versions
    voided since the export began, read by their own index, are sorted in)."""
    storage, captured = planned
    filters = LISTINGS[name]
    as_of = storage.clocks.state(BIG).issued_us

    def read(position: tuple[int, str] | None) -> list[Any]:
        return storage.reads.list_events(
            BIG, filters, position, 1000, Deadline(30.0), oldest_first=True, as_of_us=as_of
        )[0]

    first = read(None)
    assert first and first == sorted(first), "oldest first"
    after = first[-1][:2]
    plans = []
    for position in (None, after):
        captured.clear()
        read(position)
        plans.extend(_plans(storage, captured))
    nodes = [node for plan in plans for node in _nodes(plan)]
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "events"]
    sorted_tables = {
        inner.get("Relation Name")
        for n in _big_sorts(nodes)
        for inner in _nodes(n)
        if "Relation Name" in inner
    }
    assert "events" not in sorted_tables, sorted_tables


@pytest.mark.parametrize("name", LISTINGS)
def test_list_usage_events_uses_an_index(
    planned: tuple[SqlStorage, list[tuple[str, Any]]], name: str
) -> None:
    storage, captured = planned
    filters = LISTINGS[name]
    first = storage.reads.list_events(BIG, filters, None, 25, Deadline(30.0))[0]
    assert first, "the data set has events for every listing"
    assert "Seq Scan" not in _scans_of_events(
        storage, captured, lambda: storage.reads.list_events(BIG, filters, None, 25, Deadline(30.0))
    )
    after = first[-1][:2]
    scans = _scans_of_events(
        storage, captured, lambda: storage.reads.list_events(BIG, filters, after, 25, Deadline(30.0))
    )
    assert scans and "Seq Scan" not in scans, scans


GET_ONLY = PropertyFilter("and", (Condition("method", "equals", "GET"),))


@pytest.mark.parametrize(
    ("customer", "skip", "filters"),
    [("cus_3", 0, ()), ("cus_3", 5000, ()), ("cus_1234", 0, ()), ("cus_3", 100, (GET_ONLY,))],
)
def test_list_customer_usage_events_uses_an_index(
    planned: tuple[SqlStorage, list[tuple[str, Any]]],
    customer: str,
    skip: int,
    filters: tuple[PropertyFilter, ...],
) -> None:
    storage, captured = planned
    query = CustomerEventQuery(customer, "m3", END_US - 90 * DAY_US, END_US, filters)
    customer_events(storage, BIG, query, 50, skip)  # creates the aggregator outside the capture
    scans = _scans(storage, captured, lambda: customer_events(storage, BIG, query, 50, skip, Deadline(30.0)))
    assert not [s for s in scans if s[0] in BIG_TABLES and s[1] == "Seq Scan"], scans
    # Without a property filter the total's whole hours come from the customer rollup.
    assert ("rollup_customer_hourly" in {t for t, _ in scans}) == (not filters), scans


@pytest.mark.parametrize("name", LISTINGS)
def test_pages_as_of_a_moment_use_the_listings_indexes(
    planned: tuple[SqlStorage, list[tuple[str, Any]]], name: str
) -> None:
    """A cursor walk's later pages are read as of its first (storage/clock.py): by the same index,
    limited, with the versions voided since merged in."""
    storage, captured = planned
    filters = LISTINGS[name]
    as_of = storage.clocks.state(BIG).issued_us
    first = storage.reads.list_events(BIG, filters, None, 25, Deadline(30.0), as_of_us=as_of)[0]
    assert first == storage.reads.list_events(BIG, filters, None, 25, Deadline(30.0))[0]
    after = first[-1][:2]
    captured.clear()
    storage.reads.list_events(BIG, filters, after, 25, Deadline(30.0), as_of_us=as_of)
    nodes = [node for plan in _plans(storage, captured) for node in _nodes(plan)]
    events_scans = [n["Node Type"] for n in nodes if n.get("Relation Name") == "events"]
    assert events_scans and "Seq Scan" not in events_scans, events_scans
    sorts = _big_sorts(nodes)
    assert not [s for s in sorts if any(i.get("Relation Name") == "events" for i in _nodes(s))], sorts


@pytest.mark.parametrize(("customer", "filters"), [("cus_3", ()), ("cus_1234", ()), ("cus_3", (GET_ONLY,))])
def test_customer_pages_as_of_a_moment_use_an_index(
    planned: tuple[SqlStorage, list[tuple[str, Any]]], customer: str, filters: tuple[PropertyFilter, ...]
) -> None:
    """As of a moment a customer page counts the events (never the rollup), by an index."""
    storage, captured = planned
    as_of = storage.clocks.state(BIG).issued_us
    query = CustomerEventQuery(customer, "m3", END_US - 90 * DAY_US, END_US, filters)
    now = customer_events(storage, BIG, query, 50, 10)
    scans = _scans(
        storage, captured, lambda: customer_events(storage, BIG, query, 50, 10, Deadline(30.0), as_of)
    )
    assert customer_events(storage, BIG, query, 50, 10, Deadline(30.0), as_of) == now
    assert not [s for s in scans if s[0] in BIG_TABLES and s[1] == "Seq Scan"], scans
    assert "rollup_customer_hourly" not in {t for t, _ in scans}, scans


ROLLUP_SERVED = {
    "30 days hourly by metric": _aggregate("hour", 30, "metric_key"),
    "90 days daily sum by rolled-up dim": _aggregate("day", 90, "dim:region", "sum_quantity"),
    "weekly in Paris": _aggregate("week", 84, "none", zone="Europe/Paris"),
    "hourly of two metrics": _aggregate("hour", 30, "none", metric_keys=("m1", "m2")),
    "one customer by metric": _aggregate("day", 90, "metric_key", customer_id="cus_3"),
}


@pytest.mark.parametrize("name", ROLLUP_SERVED)
def test_aggregates_with_a_rollup_read_events_only_for_the_ragged_ends(
    planned: tuple[SqlStorage, list[tuple[str, Any]]], name: str
) -> None:
    storage, captured = planned
    query = ROLLUP_SERVED[name]
    assert rollups.rollup_window(query) is not None
    scans = _scans(storage, captured, lambda: storage.aggregates.aggregate(BIG, query, Deadline(30.0)))
    # (A rollup may be read whole: these windows cover most of the data set's 90 days.)
    assert ("events", "Seq Scan") not in scans, scans
    assert {t for t, _ in scans} & (BIG_TABLES - {"events"}), "a rollup answers"


RAW_INDEXED = {
    "one customer by a property": _aggregate("day", 90, "dim:region", customer_id="cus_3"),
    "one product": _aggregate("day", 90, "none", product_id="prod_2"),
    "Kolkata, one week": _aggregate("hour", 7, "none", zone="Asia/Kolkata"),
}


@pytest.mark.parametrize("name", RAW_INDEXED)
def test_aggregates_without_a_rollup_use_an_index(
    planned: tuple[SqlStorage, list[tuple[str, Any]]], name: str
) -> None:
    storage, captured = planned
    query = RAW_INDEXED[name]
    assert rollups.rollup_window(query) is None
    scans = _scans_of_events(
        storage, captured, lambda: storage.aggregates.aggregate(BIG, query, Deadline(30.0))
    )
    assert scans and "Seq Scan" not in scans, scans


@pytest.mark.parametrize("name", ["one customer by metric", "hourly of two metrics"])
def test_aggregates_as_of_a_moment_read_the_events_by_an_index(
    planned: tuple[SqlStorage, list[tuple[str, Any]]], name: str
) -> None:
    """As of a moment an aggregate is computed from the events (the rollups hold the present), by
    the index its filters select, and equals the current answer while nothing changed."""
    storage, captured = planned
    query = dataclasses.replace(ROLLUP_SERVED[name], as_of_us=storage.clocks.state(BIG).issued_us)
    scans = _scans(storage, captured, lambda: storage.aggregates.aggregate(BIG, query, Deadline(30.0)))
    assert ("events", "Seq Scan") not in scans and ("events", "Parallel Seq Scan") not in scans, scans
    assert not {t for t, _ in scans} & (BIG_TABLES - {"events"}), "no rollup is read"
    past = storage.aggregates.aggregate(BIG, query)
    now = storage.aggregates.aggregate(BIG, dataclasses.replace(query, as_of_us=None))
    assert (past.groups, past.series, sorted(past.cells)) == (now.groups, now.series, sorted(now.cells))


# Aggregators' values (storage/meters.py, and AggregateUsage narrowed to a meter): from the customer
# rollup when it holds the meter (a count or a quantity sum without property conditions), from an
# index of the events otherwise.
METERS = {
    "count": Meter("m3"),
    "quantity sum": Meter("m3", "sum"),
    "property sum": Meter("m3", "sum", "size"),
    "filtered count": Meter("m3", filters=(GET_ONLY,)),
}
PERIOD = (END_US - 30 * DAY_US - 17 * 60_000_000, END_US - 17 * 60_000_000)  # ragged ends


def test_customer_values_of_every_meter_in_one_indexed_statement(
    planned: tuple[SqlStorage, list[tuple[str, Any]]],
) -> None:
    storage, captured = planned
    meters = list(METERS.values())
    scans = _scans(storage, captured, lambda: storage.meters.customer_values(BIG, "cus_3", meters, *PERIOD))
    assert len(captured) == 1, "one statement for every aggregator"
    assert not [s for s in scans if s[0] in BIG_TABLES and s[1] == "Seq Scan"], scans
    assert "rollup_customer_hourly" in {t for t, _ in scans}, scans


@pytest.mark.parametrize("name", METERS)
def test_ranking_by_customer_uses_the_rollup_or_an_index(
    planned: tuple[SqlStorage, list[tuple[str, Any]]], name: str
) -> None:
    storage, captured = planned
    meter = METERS[name]
    scans = _scans(storage, captured, lambda: storage.meters.ranking(BIG, meter, *PERIOD, 50, 100))
    assert not [s for s in scans if s[0] in BIG_TABLES and s[1] == "Seq Scan"], scans
    assert ("rollup_customer_hourly" in {t for t, _ in scans}) == meters.rollup_serves(meter), scans


@pytest.mark.parametrize("name", METERS)
@pytest.mark.parametrize("customer", [None, "cus_3"])
def test_time_series_of_a_meter_uses_the_rollup_or_an_index(
    planned: tuple[SqlStorage, list[tuple[str, Any]]], name: str, customer: str | None
) -> None:
    storage, captured = planned
    meter = METERS[name]
    query = dataclasses.replace(
        _aggregate("day", 90, "none"),
        filters=EventFilters(customer_id=customer, metric_keys=(meter.event_type,)),
        meter=meter,
    )
    assert (rollups.rollup_window(query) is not None) == meters.rollup_serves(meter)
    scans = _scans(storage, captured, lambda: storage.aggregates.aggregate(BIG, query, Deadline(30.0)))
    assert ("events", "Seq Scan") not in scans, scans
    if customer is not None:
        # (Over every customer, the metric rollup may be read whole: the window covers the data set.)
        assert not [s for s in scans if s[0] in BIG_TABLES and s[1] == "Seq Scan"], scans
    assert bool({t for t, _ in scans} & (BIG_TABLES - {"events"})) == meters.rollup_serves(meter), scans


# ---- partition pruning: a window reads only the partitions of its months -------------------------


def _partitions_read(
    storage: SqlStorage, captured: list[tuple[str, Any]], call: Callable[[], Any]
) -> set[str]:
    captured.clear()
    call()
    assert captured, "the call ran no SELECT"
    return {n["Partition"] for p in _plans(storage, captured) for n in _nodes(p) if "Partition" in n}


def _months_of(start_us: int, end_us: int) -> set[str]:
    """The partitions of the months that [start_us, end_us) overlaps."""
    return {m.partition for m in partitions.months_between(Month.of(start_us), Month.of(end_us - 1))}


MAY_WEEK = (END_US - 14 * DAY_US, END_US - 7 * DAY_US)
STRADDLING = (buckets.to_us(dt.datetime(2026, 4, 20, 6, 17, tzinfo=dt.UTC)), END_US - 6 * DAY_US)


def _windowed(storage: SqlStorage, window: tuple[int, int]) -> dict[str, Callable[[], Any]]:
    """Every kind of read a request with the window [start, end) makes, by name."""
    start, end = window
    in_window = EventFilters(occurred_after_us=start, occurred_before_us=end)
    cus_3 = dataclasses.replace(in_window, customer_id="cus_3")
    as_of = storage.clocks.state(BIG).issued_us
    page = storage.reads.list_events(BIG, in_window, None, 25, Deadline(30.0))[0]
    query = CustomerEventQuery("cus_3", "m3", start, end)
    customer_events(storage, BIG, query, 50, 0)  # creates the aggregator outside the capture
    raw = dataclasses.replace(
        _aggregate("day", 90, "none", product_id="prod_2"), since_us=start, until_us=end
    )
    rolled = dataclasses.replace(_aggregate("hour", 90, "metric_key"), since_us=start, until_us=end)
    return {
        "list": lambda: storage.reads.list_events(BIG, in_window, None, 25, Deadline(30.0)),
        "list, next page": lambda: storage.reads.list_events(
            BIG, in_window, page[-1][:2], 25, Deadline(30.0)
        ),
        "list of a customer": lambda: storage.reads.list_events(BIG, cus_3, None, 25, Deadline(30.0)),
        "list as of a moment": lambda: storage.reads.list_events(
            BIG, cus_3, None, 25, Deadline(30.0), as_of_us=as_of
        ),
        "export, oldest first": lambda: storage.reads.list_events(
            BIG, in_window, None, 1000, Deadline(30.0), oldest_first=True, as_of_us=as_of
        ),
        "customer page": lambda: customer_events(storage, BIG, query, 50, 0, Deadline(30.0)),
        "customer page as of a moment": lambda: customer_events(
            storage, BIG, query, 50, 0, Deadline(30.0), as_of
        ),
        "aggregate from the events": lambda: storage.aggregates.aggregate(BIG, raw, Deadline(30.0)),
        "aggregate, ragged ends of a rollup": lambda: storage.aggregates.aggregate(
            BIG, rolled, Deadline(30.0)
        ),
        "aggregate as of a moment": lambda: storage.aggregates.aggregate(
            BIG, dataclasses.replace(rolled, as_of_us=as_of), Deadline(30.0)
        ),
        "customer values of meters": lambda: storage.meters.customer_values(
            BIG, "cus_3", list(METERS.values()), start, end
        ),
        "ranking by customer": lambda: storage.meters.ranking(
            BIG, METERS["filtered count"], start, end, 50, 100
        ),
    }


@pytest.mark.parametrize("window", [MAY_WEEK, STRADDLING], ids=["a week of May", "April 20 to May 26"])
def test_a_window_reads_only_the_partitions_of_its_months(
    planned: tuple[SqlStorage, list[tuple[str, Any]]], window: tuple[int, int]
) -> None:
    storage, captured = planned
    months = _months_of(*window)
    for name, call in _windowed(storage, window).items():
        read = _partitions_read(storage, captured, call)
        # A rollup may answer all of a window's whole hours; the events are read for the rest.
        assert read <= months, f"{name}: read {sorted(read)}, the window is in {sorted(months)}"
        if "ragged" not in name and "meters" not in name:
            assert read, f"{name}: read no events"


def test_a_prepared_page_prunes_partitions_when_it_runs(
    planned: tuple[SqlStorage, list[tuple[str, Any]]],
) -> None:
    """The hot pages run as prepared statements (engine.Prepared) that PostgreSQL may plan once for
    any values: the partitions outside the window are then pruned as the plan starts."""
    storage, captured = planned
    start, end = MAY_WEEK
    window = EventFilters(occurred_after_us=start, occurred_before_us=end)
    captured.clear()
    storage.reads.list_events(BIG, window, None, 25, Deadline(30.0))
    ((statement, parameters),) = captured
    raw = storage.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SET plan_cache_mode = force_generic_plan")
        names = list(parameters)
        numbered = statement
        for i, name in enumerate(names, 1):
            numbered = numbered.replace(f"%({name})s", f"${i}")
        types = ", ".join("bigint" if isinstance(parameters[n], int) else "text" for n in names)
        cur.execute(f"PREPARE page ({types}) AS {numbered}")
        values = psycopg.sql.SQL(", ").join(psycopg.sql.Literal(parameters[n]) for n in names)
        cur.execute(psycopg.sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE page({})").format(values))
        (doc,) = cur.fetchone()
        plan = (doc if isinstance(doc, list) else json.loads(doc))[0]["Plan"]
    finally:
        raw.close()
    nodes = list(_nodes(plan))
    read = {n["Partition"] for n in nodes if "Partition" in n}
    assert read == _months_of(start, end), read
    assert sum(n.get("Subplans Removed", 0) for n in nodes) >= 4, "pruned as the plan started"


def test_single_statement_reads_keep_generic_plans_and_the_rest_are_planned_for_their_values(
    planned: tuple[SqlStorage, list[tuple[str, Any]]],
) -> None:
    """Database.fetch (list pages, data versions, the commit clock) reads on a pool whose sessions
    always use a prepared statement's generic plan, pruned as it runs (the test above); the main
    pool keeps PostgreSQL's own choice, so that a count over one customer's events is planned for
    that customer (storage/dialects/postgres.py)."""
    storage, _ = planned
    setting = "SELECT current_setting('plan_cache_mode')"
    assert storage.db.fetch_sql(setting, {}) == [("force_generic_plan",)]
    with storage.db.read() as conn:
        assert conn.exec_driver_sql(setting).scalar_one() == "auto"
