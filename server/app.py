"""Composition root: builds storage, logic, servicers and the gRPC server from one Settings object.

`create_server(settings, storage)` returns the bound, not yet started server and its port (port 0
picks a free one, as tests do) with its `Observability` (metrics registry, RPC logs, tracing);
`serve` in serving.py starts it, serves /metrics when asked, and handles signals.
"""

from __future__ import annotations

import dataclasses
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from usage.v1 import (
    catalog_service_pb2,
    catalog_service_pb2_grpc,
    corrections_service_pb2,
    corrections_service_pb2_grpc,
    usage_service_pb2,
    usage_service_pb2_grpc,
)

from server.auth import TokenVerifier
from server.config import Settings
from server.logic.aggregator_usage import AggregatorUsage
from server.logic.answer_cache import AnswerCache
from server.logic.as_of import AsOf
from server.logic.catalog import Catalog
from server.logic.corrections import Corrections
from server.logic.cursors import CursorCodec
from server.logic.explain import Explainer
from server.logic.ingest import Ingestion
from server.logic.queries import UsageQueries
from server.observability import Observability
from server.rpc import reflection as described_reflection
from server.rpc.admission import RESERVED_THREADS, Admission, StreamBound
from server.rpc.catalog_servicer import CatalogServicer
from server.rpc.correction_servicer import CorrectionServicer
from server.rpc.interceptors import ServiceInterceptor
from server.rpc.usage_servicer import UsageServicer
from server.storage import migrate
from server.storage.engine import make_engine
from server.storage.sql_storage import SqlStorage

SERVICE_NAMES = (
    usage_service_pb2.DESCRIPTOR.services_by_name["UsageService"].full_name,
    catalog_service_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name,
    corrections_service_pb2.DESCRIPTOR.services_by_name["CorrectionService"].full_name,
)
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# A health name for liveness probes: SERVING while the process serves, whatever the database does
# (the health monitor only moves "" and the API services, which readiness probes check), so an
# outage of the database takes pods out of rotation without restarting them all.
LIVENESS_SERVICE = "usage-service.liveness"


class DatabaseBehind(RuntimeError):
    """The database schema is older than this code: run `usage-service migrate`."""


def open_storage(settings: Settings, auto_migrate: bool) -> SqlStorage:
    """Storage on the configured database; migrated when `auto_migrate`, else it must be current."""
    engine = make_engine(
        settings.resolved_database_url,
        settings.db_pool_size,
        settings.db_pool_timeout_s,
        statement_timeout_s=settings.default_query_timeout_s,
    )
    if auto_migrate:
        migrate.upgrade(engine)
    elif not migrate.is_current(engine):
        current = migrate.current_revision(engine)
        engine.dispose()
        raise DatabaseBehind(
            f"{f'database schema is at {current}' if current else 'the database has no schema yet'}, "
            f"this code needs {migrate.head_revision()}: run `usage-service migrate` first"
        )
    return SqlStorage(engine)


@dataclasses.dataclass
class Running:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    observability: Observability


def create_server(
    settings: Settings,
    storage: SqlStorage,
    address: str | None = None,
    observability: Observability | None = None,
    *,
    reuse_port: bool = False,
) -> Running:
    """A bound gRPC server with its services, health and reflection (not started).

    Each server gets its own `Observability` (metrics registry) unless one is given. `reuse_port`:
    bind with SO_REUSEPORT, so that the worker processes of `serve --workers N` share one port; off,
    binding a port another server listens on fails, as a single server should.
    """
    cursors = CursorCodec(settings.cursor_secret)
    observability = observability or Observability(storage.engine)
    # max_workers calls run at once, max_concurrent_rpcs are admitted (running or waiting) and each
    # admitted call holds a thread, so the pool has RESERVED_THREADS more for health checks and for
    # answering RESOURCE_EXHAUSTED (rpc/admission.py). grpc's own bound stays as a backstop against
    # a flood of connections queueing without limit.
    admitted = settings.max_concurrent_rpcs if settings.max_concurrent_rpcs > 0 else settings.max_workers
    admission = Admission(
        settings.max_concurrent_rpcs, settings.max_workers, settings.max_request_mib_in_flight * 1024 * 1024
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=max(admitted, settings.max_workers) + RESERVED_THREADS, thread_name_prefix="rpc"
        ),
        interceptors=[
            ServiceInterceptor(
                TokenVerifier(settings),
                observability,
                admission,
                StreamBound(settings.max_export_streams, settings.max_export_streams_per_org),
            )
        ],
        maximum_concurrent_rpcs=2 * admitted + RESERVED_THREADS if settings.max_concurrent_rpcs > 0 else None,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ],
    )
    answers = AnswerCache(settings.aggregate_cache_mb << 20) if settings.aggregate_cache_mb > 0 else None
    if answers is not None:
        observability.watch_answer_cache(answers)
    as_of = AsOf(storage, settings.as_of_horizon_days)
    queries = UsageQueries(
        storage, cursors, settings.max_aggregate_buckets, settings.max_aggregate_points, answers, as_of=as_of
    )
    catalog = Catalog(storage.catalog, cursors)
    usage_service_pb2_grpc.add_UsageServiceServicer_to_server(
        UsageServicer(
            queries,
            Explainer(storage, as_of),
            Ingestion(storage.events, settings.max_future_skew_s),
            settings.default_query_timeout_s,
            on_ingested=observability.count_ingested,
            usage=AggregatorUsage(storage, catalog, queries, as_of),
        ),
        server,
    )
    catalog_service_pb2_grpc.add_CatalogServiceServicer_to_server(
        CatalogServicer(catalog, settings.default_query_timeout_s), server
    )
    corrections_service_pb2_grpc.add_CorrectionServiceServicer_to_server(
        CorrectionServicer(
            Corrections(storage.corrections, settings.jwt_caller_claim, settings.max_future_skew_s),
            settings.default_query_timeout_s,
        ),
        server,
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    described_reflection.enable((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(address or f"{settings.host}:{settings.port}")
    if port == 0:
        raise OSError(f"could not bind {address or f'{settings.host}:{settings.port}'}")
    for name in ("", *SERVICE_NAMES, LIVENESS_SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return Running(server, port, health_servicer, observability)
