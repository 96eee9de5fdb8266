"""Table definitions (SQLAlchemy Core). Migrations in server/migrations create exactly these.

Every primary key and unique index leads with organization_id (Citus-ready: distribute by it).
Times are BIGINT microseconds since the epoch, UTC.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

# JSONB on PostgreSQL (indexable, typed comparisons), JSON text on SQLite (json1 functions).
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# Exact decimals on PostgreSQL; SQLite has no decimal type, so the canonical string is kept.
Decimal = sa.Numeric(38, 12, asdecimal=True).with_variant(sa.String(48), "sqlite")

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("organization_id", sa.String(128), primary_key=True),
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(256), nullable=False, server_default=""),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
)

aggregators = sa.Table(
    "aggregators",
    metadata,
    sa.Column("organization_id", sa.String(128), primary_key=True),
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("event_type", sa.String(128), nullable=False),
    sa.Column("operation", sa.String(16), nullable=False),
    sa.Column("property", sa.String(64), nullable=False, server_default=""),
    sa.Column("unit_name", sa.String(64), nullable=False, server_default=""),
    sa.Column("display_name_property", sa.String(64), nullable=False, server_default=""),
    sa.Column("filter", Json, nullable=True),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("updated_at_us", sa.BigInteger, nullable=False),
)

aggregator_filters = sa.Table(
    "aggregator_filters",
    metadata,
    sa.Column("organization_id", sa.String(128), primary_key=True),
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("aggregator_id", sa.String(128), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("filter", Json, nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Index("ix_aggregator_filters_aggregator", "organization_id", "aggregator_id", "id"),
)

# On PostgreSQL a table partitioned by month of the event time (storage/partitions.py; migration
# 0010): a partition per month, created ahead of time, and a default partition for any other time,
# so no event is ever refused for its time. PostgreSQL requires the partition key in every unique
# index, so the primary key ends with timestamp_us; an event id is unique without that column too,
# because each one is 122 random bits drawn by the service (event_store.new_event_id), and reads
# by id (voids, amends, explain) find it through each partition's primary key.
events = sa.Table(
    "events",
    metadata,
    sa.Column("organization_id", sa.String(128), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("customer_id", sa.String(128), nullable=False),
    sa.Column("metric_key", sa.String(128), nullable=False),
    sa.Column("timestamp_us", sa.BigInteger, primary_key=True),
    sa.Column("ingested_at_us", sa.BigInteger, nullable=False),
    sa.Column("quantity", Decimal, nullable=False),
    sa.Column("product_id", sa.String(128)),
    sa.Column("subscription_id", sa.String(128)),
    sa.Column("price_key", sa.String(128)),
    sa.Column("idempotency_key", sa.String(255)),
    sa.Column("external_cost_amount", Decimal),
    sa.Column("external_cost_currency", sa.String(3)),
    sa.Column("wallet_currency", sa.String(3)),
    sa.Column("properties", Json, nullable=False),
    # The event as list responses send it (server/wire.py): filled at ingestion, never changed.
    sa.Column("wire", sa.LargeBinary, nullable=False),
    postgresql_partition_by="RANGE (timestamp_us)",
)

# Column order of event rows (COPY, INSERT): event_store.event_row builds them so.
EVENT_COLUMNS = tuple(c.name for c in events.columns)

# ListUsageEvents: newest first over the organization, keyset on (timestamp, id).
sa.Index("ix_events_org_time", events.c.organization_id, events.c.timestamp_us.desc(), events.c.id.desc())
# ListCustomerUsageEvents: one customer's events of one metric, newest first.
sa.Index(
    "ix_events_customer_metric_time",
    events.c.organization_id,
    events.c.customer_id,
    events.c.metric_key,
    events.c.timestamp_us.desc(),
    events.c.id.desc(),
)

# One row per (organization, idempotency key): the unique claim that makes ingestion exactly-once.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("organization_id", sa.String(128), primary_key=True),
    sa.Column("idempotency_key", sa.String(255), primary_key=True),
    sa.Column("event_id", sa.String(64), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
)

# More ListUsageEvents paths: newest first within one customer, metric, product or subscription.
sa.Index(
    "ix_events_customer_time",
    events.c.organization_id,
    events.c.customer_id,
    events.c.timestamp_us.desc(),
    events.c.id.desc(),
)
sa.Index(
    "ix_events_metric_time",
    events.c.organization_id,
    events.c.metric_key,
    events.c.timestamp_us.desc(),
    events.c.id.desc(),
)
# Partial: most events carry no product or subscription, and `= :x` implies IS NOT NULL.
sa.Index(
    "ix_events_product_time",
    events.c.organization_id,
    events.c.product_id,
    events.c.timestamp_us.desc(),
    events.c.id.desc(),
    postgresql_where=events.c.product_id.isnot(None),
    sqlite_where=events.c.product_id.isnot(None),
)
sa.Index(
    "ix_events_subscription_time",
    events.c.organization_id,
    events.c.subscription_id,
    events.c.timestamp_us.desc(),
    events.c.id.desc(),
    postgresql_where=events.c.subscription_id.isnot(None),
    sqlite_where=events.c.subscription_id.isnot(None),
)

# ---- rollups (storage/rollups.py): hourly counts and exact sums, kept in the ingest transaction.
# Filled and read on PostgreSQL only: SQLite keeps quantities as text (decimal_sum adds them exactly
# at read time), which a running sum in a column could not keep exact; the embedded store answers
# from the events, which at its sizes takes milliseconds.

# Per organization, UTC hour and metric key.
rollup_metric_hourly = sa.Table(
    "rollup_metric_hourly",
    metadata,
    sa.Column("organization_id", sa.String(128), primary_key=True),
    sa.Column("hour_us", sa.BigInteger, primary_key=True),
    sa.Column("metric_key", sa.String(128), primary_key=True),
    sa.Column("event_count", sa.BigInteger, nullable=False),
    sa.Column("quantity_sum", sa.Numeric(asdecimal=True), nullable=False),
)

# Per organization, rolled-up dimension (property key), UTC hour, property value and metric key.
# The value is the property as group_by dim:KEY shows it ('' when absent).
rollup_dimension_hourly = sa.Table(
    "rollup_dimension_hourly",
    metadata,
    sa.Column("organization_id", sa.String(128), primary_key=True),
    sa.Column("dim_key", sa.String(64), primary_key=True),
    sa.Column("hour_us", sa.BigInteger, primary_key=True),
    sa.Column("dim_value", sa.Text, primary_key=True),
    sa.Column("metric_key", sa.String(128), primary_key=True),
    sa.Column("event_count", sa.BigInteger, nullable=False),
    sa.Column("quantity_sum", sa.Numeric(asdecimal=True), nullable=False),
)

# Per organization, customer, metric key and UTC hour: one customer's totals (ListCustomerUsageEvents
# of an aggregator without a property filter; AggregateUsage filtered by customer) without counting
# that customer's events.
rollup_customer_hourly = sa.Table(
    "rollup_customer_hourly",
    metadata,
    sa.Column("organization_id", sa.String(128), primary_key=True),
    sa.Column("customer_id", sa.String(128), primary_key=True),
    sa.Column("metric_key", sa.String(128), primary_key=True),
    sa.Column("hour_us", sa.BigInteger, primary_key=True),
    sa.Column("event_count", sa.BigInteger, nullable=False),
    sa.Column("quantity_sum", sa.Numeric(asdecimal=True), nullable=False),
)

# Every customer's hours of one metric key (ListAggregatorUsageByCustomer ranks them).
sa.Index(
    "ix_rollup_customer_metric_hour",
    rollup_customer_hourly.c.organization_id,
    rollup_customer_hourly.c.metric_key,
    rollup_customer_hourly.c.hour_us,
    rollup_customer_hourly.c.customer_id,
)

# The property keys that rollup_dimension_hourly covers, for every organization
# (`usage-service rollups add-dimension KEY` backfills one).
rollup_dimensions = sa.Table(
    "rollup_dimensions",
    metadata,
    sa.Column("dim_key", sa.String(64), primary_key=True),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
)

# Per organization, a counter that every transaction changing its events increments (ingestion,
# in the same transaction): answers computed at one version stay right while it is unchanged
# (logic/answer_cache.py keeps AggregateUsage answers by it). `clock_us` is the commit clock of the
# last such transaction (storage/clock.py): the time its events were recorded (ingested_at_us) and
# its voids took effect (voided_at_us), strictly increasing per organization.
organization_versions = sa.Table(
    "organization_versions",
    metadata,
    sa.Column("organization_id", sa.String(128), primary_key=True),
    sa.Column("data_version", sa.BigInteger, nullable=False),
    sa.Column("clock_us", sa.BigInteger, nullable=False, server_default="0"),
)

# One row: the commit clock's origin. Every event and void stored before migration 0009 is older
# than it, and every one stored since has a later commit clock; `as_of` answers start here.
as_of_floor = sa.Table(
    "as_of_floor",
    metadata,
    sa.Column("floor_us", sa.BigInteger, nullable=False),
)

# ---- corrections (storage/corrections.py) --------------------------------------------------------
# A voided version of an event: its events row, moved here unchanged by the void's transaction (so
# no read of events ever sees it and none of them pays a filter for it), with when, by whom and why
# it was voided. Rows are only ever inserted: nothing updates or deletes them, and the primary key
# means a version is voided at most once. `replaced_by` names the version that replaced it (amend).
voided_events = sa.Table(
    "voided_events",
    metadata,
    # Not partitioned (voids are few): its primary key is the version's id, so a version is voided once.
    *(
        sa.Column(c.name, c.type, primary_key=c.name in ("organization_id", "id"), nullable=c.nullable)
        for c in events.columns
    ),
    sa.Column("voided_at_us", sa.BigInteger, nullable=False),
    sa.Column("voided_by", sa.String(256), nullable=False),
    sa.Column("void_reason", sa.String(1024), nullable=False),
    sa.Column("replaced_by", sa.String(64), nullable=True),
)
# An amended event's history, walked back from its current version (storage/corrections.py).
sa.Index("ix_voided_events_replaced_by", voided_events.c.organization_id, voided_events.c.replaced_by)
# `as_of` reads (storage/as_of.py): the versions voided after a past moment, which it still counts.
sa.Index("ix_voided_events_voided_at", voided_events.c.organization_id, voided_events.c.voided_at_us)
