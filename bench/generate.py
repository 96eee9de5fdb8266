"""The data generator: loads a `Dataset` into a migrated database with COPY (psycopg 3 `cursor.copy`).

    report = load(conninfo, Dataset(1_000_000))

One transaction: every table holding organizations' data is truncated (configuration such as the
rolled-up dimensions stays), the indexes and primary keys of `events`
and `idempotency_keys` are dropped, customers, events (generated in time order, the way they would
be ingested, so the heap is physically ordered by time) and idempotency keys are copied in, and the
dropped constraints and indexes are recreated from their own catalog definitions
(`pg_get_constraintdef`, `pg_get_indexdef`). The schema is compared before and after: it ends
exactly as migrated. Then VACUUM (FREEZE, ANALYZE), so the planner has statistics and index-only
scans see an all-visible table.

Rows are generated in pure Python with `random.choices` over precomputed cumulative weights, in
chunks of ~20k events; the COPY stream overlaps generation (PostgreSQL parses on the other core).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import sqlalchemy as sa

from bench import dataset as d
from bench.dataset import Dataset
from server.domain import NewEvent
from server.storage import partitions
from server.wire import event_entry

CHUNK_EVENTS = 20_000
EVENT_COLUMNS = (
    "organization_id",
    "id",
    "customer_id",
    "metric_key",
    "timestamp_us",
    "ingested_at_us",
    "quantity",
    "product_id",
    "subscription_id",
    "price_key",
    "idempotency_key",
    "external_cost_amount",
    "external_cost_currency",
    "wallet_currency",
    "properties",
    "wire",
)
# Tables whose indexes are dropped around COPY (big and with random keys).
REINDEXED_TABLES = ("events", "idempotency_keys")
_NULL = "\\N"


@dataclasses.dataclass
class LoadReport:
    events: int
    customers: int
    idempotency_keys: int
    copy_s: float
    index_s: float
    vacuum_s: float
    end_us: int

    @property
    def copy_rows_per_s(self) -> float:
        return self.events / self.copy_s if self.copy_s else 0.0


# ---- rows -------------------------------------------------------------------------------------
class RowGenerator:
    """COPY text lines for the events of a data set, in time order, and the idempotency key rows."""

    def __init__(self, ds: Dataset, end_us: int) -> None:
        self.ds = ds
        self.end_us = end_us
        self.start_us = end_us - d.SPAN_DAYS * d.DAY_US
        self.rng = random.Random(ds.seed)
        rng = self.rng
        self.orgs = ds.orgs
        self.org_cw = d.cumulative([o.share for o in self.orgs])
        self.cust_cw = [d.cumulative(d.zipf_weights(o.customers, d.CUSTOMER_ZIPF_S)) for o in self.orgs]
        region_cw, plan_cw = d.cumulative(d.REGION_WEIGHTS), d.cumulative(d.PLAN_WEIGHTS)
        # Region and plan are properties of the customer.
        self.cust_attrs: list[list[tuple[str, str]]] = []
        for o in self.orgs:
            regions = rng.choices(d.REGIONS, cum_weights=region_cw, k=o.customers)
            plans = rng.choices(d.PLANS, cum_weights=plan_cw, k=o.customers)
            self.cust_attrs.append(list(zip(regions, plans, strict=True)))
        self.metric_cw = d.cumulative(d.zipf_weights(len(d.METRICS), d.METRIC_ZIPF_S))
        self.endpoint_cw = d.cumulative(d.zipf_weights(len(d.ENDPOINTS), d.ENDPOINT_ZIPF_S))
        self.method_cw = d.cumulative(d.METHOD_WEIGHTS)
        self.hash = _sha256
        self._hash_checks = 100  # compared with the service's own hash before trusting the fast one
        self.cust_ids = ["", *(d.customer_id(n) for n in range(1, max(o.customers for o in self.orgs) + 1))]
        self.cust_json = [
            [f'{{"region":"{region}","plan":"{plan}"' for region, plan in attrs] for attrs in self.cust_attrs
        ]

    def customers(self) -> Iterator[str]:
        for o in self.orgs:
            for n in range(1, o.customers + 1):
                cid = d.customer_id(n)
                yield f"{o.id}\t{cid}\tCustomer {n:05d} of {o.id}\t{self.start_us}\n"

    def chunks(self, keys_out: Any) -> Iterator[str]:
        """Blocks of event lines; idempotency key lines are written to `keys_out` on the way."""
        n_chunks = max(1, -(-self.ds.events // CHUNK_EVENTS))
        span = (self.end_us - self.start_us) // n_chunks
        base, extra = divmod(self.ds.events, n_chunks)
        for c in range(n_chunks):
            yield self._chunk(self.start_us + c * span, span, base + (1 if c < extra else 0), keys_out)

    def _chunk(self, t0: int, span: int, n: int, keys_out: Any) -> str:
        rng = self.rng
        rnd = rng.random
        bits = rng.getrandbits
        org_idx = rng.choices(range(len(self.orgs)), cum_weights=self.org_cw, k=n)
        counts = [0] * len(self.orgs)
        for o in org_idx:
            counts[o] += 1
        cust_iters = [
            iter(rng.choices(range(1, org.customers + 1), cum_weights=self.cust_cw[i], k=counts[i]))
            for i, org in enumerate(self.orgs)
        ]
        stamps = sorted(t0 + int(rnd() * span) for _ in range(n))
        metrics = rng.choices(range(len(d.METRICS)), cum_weights=self.metric_cw, k=n)
        endpoints = rng.choices(d.ENDPOINTS, cum_weights=self.endpoint_cw, k=n)
        methods = rng.choices(d.METHODS, cum_weights=self.method_cw, k=n)
        lines: list[str] = []
        keys: list[str] = []
        for i in range(n):
            o = org_idx[i]
            org = self.orgs[o].id
            cn = next(cust_iters[o])
            cid = self.cust_ids[cn]
            region, plan = self.cust_attrs[o][cn - 1]
            mi = metrics[i]
            metric, kind, api = d.METRICS[mi]
            ts = stamps[i]
            if kind == "one":
                quantity = "1"
            elif kind == "int":
                quantity = str(int(rnd() * 5000) + 1)
            else:
                quantity = f"{rnd() * 100:.4f}".rstrip("0").rstrip(".")
            # Properties as JSON text from safe fragments (plain ASCII, nothing to escape).
            user = f"usr_{int(rnd() * d.USER_IDS):06d}" if rnd() < d.USER_ID_SHARE else None
            endpoint_method = f'"endpoint":"{endpoints[i]}","method":"{methods[i]}",' if api else ""
            user_part = f',"user_id":"{user}"}}' if user else "}"
            text = self.cust_json[o][cn - 1] + ("," + endpoint_method[:-1] if api else "") + user_part
            product = d.metric_product(mi) if rnd() < d.PRODUCT_SHARE else None
            subscription = f"sub_{cn:05d}" if rnd() < d.SUBSCRIPTION_SHARE else None
            price_key = f"price_{metric}_{plan}" if rnd() < d.PRICE_KEY_SHARE else None
            wallet = ("EUR", "USD")[cn & 1] if rnd() < d.WALLET_SHARE else None
            cost = cost_currency = None
            if metric.startswith("llm_"):
                cost = f"{int(quantity) * 0.000002:.6f}".rstrip("0").rstrip(".")
                cost_currency = "USD"
            event_id = f"evt_{bits(128):032x}"
            ingested_at = ts + int(rnd() * 2_000_000)
            key = None
            if rnd() < d.IDEMPOTENCY_SHARE:
                key = f"idem_{bits(96):024x}"
                canonical = _canonical(
                    cid,
                    metric,
                    ts,
                    quantity,
                    (product, subscription, price_key, cost, cost_currency, wallet),
                    f'{{{endpoint_method}"plan":"{plan}","region":"{region}"{user_part}',
                )
                if self._hash_checks:
                    self._check_hash(canonical, json.loads(text))
                keys.append(f"{org}\t{key}\t{event_id}\t{self.hash(canonical)}\n")
            # The stored wire form, written by the service's own server.wire (as ingestion does).
            entry = event_entry(
                org,
                event_id,
                NewEvent(
                    cid,
                    metric,
                    ts,
                    quantity,
                    key,
                    product,
                    subscription,
                    price_key,
                    cost,
                    cost_currency,
                    wallet,
                    json.loads(text),
                ),
                ingested_at,
            )
            lines.append(
                "\t".join(
                    (
                        org,
                        event_id,
                        cid,
                        metric,
                        str(ts),
                        str(ingested_at),
                        quantity,
                        product or _NULL,
                        subscription or _NULL,
                        price_key or _NULL,
                        key or _NULL,
                        cost or _NULL,
                        cost_currency or _NULL,
                        wallet or _NULL,
                        text,
                        "\\\\x" + entry.hex(),  # bytea's hex input, its backslash escaped for COPY
                    )
                )
            )
        lines.append("")
        if keys:
            keys_out.write("".join(keys))
        return "\n".join(lines)

    def _check_hash(self, canonical: str, properties: dict[str, Any]) -> None:
        """The fast content hash must equal the service's own (NewEvent.content_hash); if the
        service's definition changed, use it instead (slower, but the keys stay correct)."""

        self._hash_checks -= 1
        content = json.loads(canonical)
        content["properties"] = properties
        expected = NewEvent(idempotency_key="k", **content).content_hash()
        if _sha256(canonical) != expected:
            print("  note: NewEvent.content_hash changed shape; using it directly (slower load)")
            self._hash_checks = 0

            def slow(text: str) -> str:
                return NewEvent(idempotency_key="k", **json.loads(text)).content_hash()

            self.hash = slow


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _json_or_null(value: str | None) -> str:
    return "null" if value is None else f'"{value}"'


def _canonical(
    cid: str, metric: str, ts: int, quantity: str, optional: tuple[str | None, ...], props: str
) -> str:
    """The canonical JSON that NewEvent.content_hash digests (keys sorted, no spaces), written
    directly: 5x faster than json.dumps(sort_keys=True); values are plain ASCII, nothing to escape."""
    product, subscription, price_key, cost, cost_currency, wallet = map(_json_or_null, optional)
    return (
        f'{{"customer_id":"{cid}","external_cost_amount":{cost},"external_cost_currency":{cost_currency},'
        f'"metric_key":"{metric}","price_key":{price_key},"product_id":{product},"properties":{props},'
        f'"quantity":"{quantity}","subscription_id":{subscription},"timestamp_us":{ts},'
        f'"wallet_currency":{wallet}}}'
    )


# ---- schema -----------------------------------------------------------------------------------
def schema_snapshot(conn: psycopg.Connection) -> list[tuple[str, ...]]:
    """Every index and constraint of the public schema, as the catalog defines them."""
    rows = conn.execute(
        """
        SELECT 'index', tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
        UNION ALL
        SELECT 'constraint', c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'public'
        ORDER BY 1, 2, 3
        """
    ).fetchall()
    return [tuple(r) for r in rows]


def _public_tables(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version' "
        "ORDER BY tablename"
    ).fetchall()
    return [r[0] for r in rows]


def org_tables(conn: psycopg.Connection) -> list[str]:
    """The tables holding organizations' data (those with an organization_id column): the load
    empties them; tables without one (alembic_version, rollup_dimensions: configuration) are kept."""
    rows = conn.execute(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' "
        "AND column_name = 'organization_id' ORDER BY table_name"
    ).fetchall()
    return [r[0] for r in rows]


def _drop_indexes(conn: psycopg.Connection, table: str) -> list[str]:
    """Drop the indexes and key constraints of `table`; returns the DDL that recreates them."""
    recreate: list[str] = []
    constraints = conn.execute(
        "SELECT conname, pg_get_constraintdef(oid), conindid FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype IN ('p', 'u')",
        (table,),
    ).fetchall()
    backing = {r[2] for r in constraints}
    indexes = conn.execute(
        "SELECT indexrelid, pg_get_indexdef(indexrelid), indexrelid::regclass::text FROM pg_index "
        "WHERE indrelid = %s::regclass",
        (table,),
    ).fetchall()
    for name, definition, _ in constraints:
        conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        recreate.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    for oid, definition, name in indexes:
        if oid not in backing:
            conn.execute(f"DROP INDEX {name}")
            # A partitioned table's index reads "ON ONLY events": made so, it would stay invalid
            # and never reach the partitions; "ON events" builds it on every partition too.
            recreate.append(definition.replace(" ON ONLY ", " ON ", 1))
    return recreate


def _month_partitions(conninfo: str, start_us: int, end_us: int) -> None:
    """The partitions of the data set's months (server/storage/partitions.py), created before the
    COPY as `usage-service partitions` creates them ahead of time: the rows go straight to theirs."""
    engine = sa.create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(conninfo))
    try:
        with engine.begin() as conn:
            months = partitions.months_between(partitions.Month.of(start_us), partitions.Month.of(end_us))
            created = partitions.create_months(conn, months)
    finally:
        engine.dispose()
    if created:
        print(f"  partitions created: {', '.join(m.partition for m in created)}", flush=True)


# ---- load -------------------------------------------------------------------------------------
def load(conninfo: str, ds: Dataset, end_us: int | None = None) -> LoadReport:
    """Replace the database's data with `ds`, its 90 days ending at `end_us` (default: now)."""
    end_us = end_us or (time.time_ns() // 1000 - 60_000_000)
    gen = RowGenerator(ds, end_us)
    _month_partitions(conninfo, gen.start_us, end_us)
    with psycopg.connect(conninfo) as conn:
        before = schema_snapshot(conn)
        conn.execute("SET maintenance_work_mem = '1GB'")
        tables = org_tables(conn)
        conn.execute("TRUNCATE " + ", ".join(tables))
        recreate = [ddl for t in REINDEXED_TABLES for ddl in _drop_indexes(conn, t)]
        with conn.cursor() as cur:
            customers = 0
            with cur.copy("COPY customers (organization_id, id, name, created_at_us) FROM STDIN") as cp:
                for line in gen.customers():
                    cp.write(line)
                    customers += 1
            with tempfile.TemporaryFile("w+", encoding="utf-8") as keys_file:
                t0 = time.perf_counter()
                with cur.copy(f"COPY events ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as cp:
                    done = 0
                    for block in gen.chunks(keys_file):
                        cp.write(block)
                        done += CHUNK_EVENTS
                        if done % 1_000_000 < CHUNK_EVENTS:
                            rate = done / (time.perf_counter() - t0)
                            print(f"  ... {min(done, ds.events):,} events ({rate:,.0f} rows/s)", flush=True)
                copy_s = time.perf_counter() - t0
                keys_file.seek(0)
                n_keys = 0
                with cur.copy(
                    "COPY idempotency_keys (organization_id, idempotency_key, event_id, content_hash) "
                    "FROM STDIN"
                ) as cp:
                    while block := keys_file.read(1 << 20):
                        cp.write(block)
                        n_keys += block.count("\n")
        print(
            f"  COPY events: {ds.events:,} rows in {copy_s:.1f} s = {ds.events / copy_s:,.0f} rows/s "
            f"(+ {customers:,} customers, {n_keys:,} idempotency keys)",
            flush=True,
        )
        t1 = time.perf_counter()
        for ddl in recreate:
            conn.execute(ddl)
        # The loaded events bypassed the commit clock (server/storage/clock.py): as_of answers
        # start after the last of them, as migration 0009 starts them after events stored before it.
        conn.execute(
            "UPDATE as_of_floor SET floor_us = greatest(floor_us, "
            "(SELECT coalesce(max(ingested_at_us), 0) + 1 FROM events))"
        )
        conn.commit()
        index_s = time.perf_counter() - t1
        print(f"  indexes and keys rebuilt in {index_s:.1f} s", flush=True)
        after = schema_snapshot(conn)
        if after != before:
            raise RuntimeError(f"schema changed by the load:\nbefore {before}\nafter  {after}")
    vacuum_s = vacuum_analyze(conninfo, tables)
    print(f"  VACUUM (FREEZE, ANALYZE) in {vacuum_s:.1f} s", flush=True)
    return LoadReport(ds.events, customers, n_keys, copy_s, index_s, vacuum_s, end_us)


def vacuum_analyze(conninfo: str, tables: list[str] | None = None) -> float:
    t0 = time.perf_counter()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        for table in tables or _public_tables(conn):
            conn.execute(f"VACUUM (FREEZE, ANALYZE) {table}")
    return time.perf_counter() - t0


def loaded_events(conninfo: str) -> int:
    """How many events the database holds (0 when the schema is missing)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])  # type: ignore[index]
        except psycopg.errors.UndefinedTable:
            return 0


def has_bench_data(conninfo: str) -> bool:
    """Whether the events are (at least partly) the benchmark's: its big organization has some."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM events WHERE organization_id = %s LIMIT 1", (d.BIG_ORG,)).fetchone()
    return row is not None


def data_end_us(conninfo: str) -> int:
    """The newest event of the big organization: the data set's "now"."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT max(timestamp_us) FROM events WHERE organization_id = %s", (d.BIG_ORG,)
        ).fetchone()
    if row is None or row[0] is None:
        raise RuntimeError("the database holds no events of the benchmark's big organization")
    return int(row[0])
