-- Distribute usage-service's schema by organization_id on Citus (docs/scaling.md).
--
-- Run on the coordinator, after `usage-service migrate` has created the tables there:
--   psql "postgresql://usage@COORDINATOR:5432/usage" -v ON_ERROR_STOP=1 -f deploy/citus-distribute.sql
-- deploy/citus-compose.yaml runs it as its `distribute` step. Each statement acts only on a table
-- that is not distributed yet, so running the file again changes nothing.
--
-- Every organization-scoped table is distributed by organization_id and colocated with events: one
-- organization's rows of every table live in shards of the same index, on the same worker, so each
-- RPC's statements (each ties every such table to one organization_id: tests/storage/test_citus_ready.py)
-- run on that one worker, joins and transactions included. tests/ecosystem/test_deploy.py checks
-- that this file names every table of server/storage/schema.py, each the way its scope calls for.
--
-- On a database that already holds events, create_distributed_table copies the rows to the workers
-- and blocks writes to the table meanwhile; Citus 11.2+ has create_distributed_table_concurrently
-- for large tables (one at a time, outside a transaction). See docs/scaling.md.

-- The anchor of the colocation group.
SELECT create_distributed_table('events', 'organization_id')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'events'::regclass);

-- Corrections: voided versions, read with the live ones (history, explain).
SELECT create_distributed_table('voided_events', 'organization_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'voided_events'::regclass);

-- Exactly-once claims, written in the ingest transaction with the events.
SELECT create_distributed_table('idempotency_keys', 'organization_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'idempotency_keys'::regclass);

-- Rollups, updated in the same transaction as the events they count.
SELECT create_distributed_table('rollup_metric_hourly', 'organization_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'rollup_metric_hourly'::regclass);
SELECT create_distributed_table('rollup_dimension_hourly', 'organization_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'rollup_dimension_hourly'::regclass);
SELECT create_distributed_table('rollup_customer_hourly', 'organization_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'rollup_customer_hourly'::regclass);

-- The data version bumped last in every transaction that changes an organization's events.
SELECT create_distributed_table('organization_versions', 'organization_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'organization_versions'::regclass);

-- The catalog: customer pages join customers and aggregators with the events.
SELECT create_distributed_table('customers', 'organization_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'customers'::regclass);
SELECT create_distributed_table('aggregators', 'organization_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'aggregators'::regclass);
SELECT create_distributed_table('aggregator_filters', 'organization_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'aggregator_filters'::regclass);

-- Global by design: the rolled-up property keys, the same for every organization, joined by every
-- ingestion. A reference table keeps a copy on each worker, so that join stays on the one worker.
SELECT create_reference_table('rollup_dimensions')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'rollup_dimensions'::regclass);

-- Global by design: the commit clock's origin (one row, set by migration 0009), read by every
-- writer's clock statement with its organization's organization_versions row.
SELECT create_reference_table('as_of_floor')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'as_of_floor'::regclass);

-- alembic_version stays a plain table on the coordinator: only `usage-service migrate` and the
-- start-up schema check read it, and both run there.
