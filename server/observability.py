"""Metrics, structured logs and optional tracing of the RPCs one server instance answers.

- `Observability`: a Prometheus `CollectorRegistry` per server (tests in one process do not share
  counters), the RPC metrics (names and labels as go-grpc-prometheus spells them, so stock dashboards
  work), the database pool gauges (read from the SQLAlchemy pool at scrape time), ingested events by
  result, and `rpc()`: the context manager the interceptor wraps each unary RPC in.
- One JSON log line per RPC on the `usage.rpc` logger: method, code, duration_ms, organization,
  request_id (the caller's `x-request-id` when it is a sane token, else a generated one; the server
  returns it as response metadata), peer, and trace_id when tracing is on; like every JSON line, the
  pid of the process that served it.
- OpenTelemetry: when `opentelemetry` is importable and a tracer provider is installed before the
  server is built (`opentelemetry-instrument`, or the SDK's `trace.set_tracer_provider` at start),
  each RPC runs in a SERVER span (W3C `traceparent` from the request metadata is honoured);
  exporters are the deployment's choice. Without them nothing is traced, at no cost per call.
- `serve_metrics(host, port)`: `/metrics` over HTTP (port 0 picks a free one).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine
from sqlalchemy.pool import QueuePool

from server.storage.dialects import SINGLE_READS_OPTION

REQUEST_ID_HEADER = "x-request-id"
# gRPC's infrastructure services, health and reflection: they need no token, are never counted by
# admission (interceptors.py), and their successful calls (probes every few seconds) log at DEBUG.
INFRASTRUCTURE_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
RPC_LOGGER = "usage.rpc"
_rpc_log = logging.getLogger(RPC_LOGGER)
# Latency buckets (seconds): sub-millisecond keyset pages up to multi-second aggregates.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def request_id(metadata: Mapping[str, str | bytes]) -> str:
    """The caller's x-request-id when it is a short printable token, else a fresh one."""
    given = metadata.get(REQUEST_ID_HEADER)
    if isinstance(given, str) and _SANE_REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


def split_method(method: str) -> tuple[str, str]:
    """`/usage.v1.UsageService/ListUsageEvents` -> (`usage.v1.UsageService`, `ListUsageEvents`)."""
    service, _, name = method.lstrip("/").rpartition("/")
    return service, name


@dataclasses.dataclass
class RpcRecord:
    """What the interceptor learns while serving one RPC; logged and counted when it ends."""

    method: str
    request_id: str
    peer: str = ""
    organization: str = ""
    code: grpc.StatusCode = grpc.StatusCode.OK


class PoolCollector(Collector):
    """Gauges of the engine's connection pools, read when Prometheus scrapes: the sum over the
    engine's pool and, on PostgreSQL, the pool of its single-statement reads (storage/engine.py)."""

    def __init__(self, engine: Engine) -> None:
        single = engine.get_execution_options().get(SINGLE_READS_OPTION)
        self._engines = [engine] if single is None else [engine, single]

    def collect(self) -> Iterable[GaugeMetricFamily]:
        pools = [e.pool for e in self._engines if isinstance(e.pool, QueuePool)]
        if not pools:
            return []
        size = GaugeMetricFamily("usage_db_pool_size", "Configured connections of the database pools.")
        size.add_metric([], sum(p.size() for p in pools))
        out = GaugeMetricFamily("usage_db_pool_checked_out", "Database connections in use by requests.")
        out.add_metric([], sum(p.checkedout() for p in pools))
        idle = GaugeMetricFamily("usage_db_pool_checked_in", "Open database connections idle in the pools.")
        idle.add_metric([], sum(p.checkedin() for p in pools))
        return [size, out, idle]


class AnswerCacheCollector(Collector):
    """The answer cache's hits, misses and size (logic/answer_cache.py), read when Prometheus scrapes."""

    def __init__(self, cache: Any) -> None:
        self._cache = cache

    def collect(self) -> Iterable[Any]:
        requests = CounterMetricFamily(
            "usage_answer_cache_requests",
            "AggregateUsage answers looked up in the answer cache, by result (hit, miss).",
            labels=["result"],
        )
        requests.add_metric(["hit"], self._cache.hits)
        requests.add_metric(["miss"], self._cache.misses)
        size = GaugeMetricFamily("usage_answer_cache_bytes", "Bytes of answers kept in the answer cache.")
        size.add_metric([], self._cache.size_bytes)
        return [requests, size]


class Observability:
    """The metrics registry, RPC instrumentation and tracer of one server instance."""

    def __init__(
        self, engine: Engine | None = None, *, tracing: bool = True, tracer_provider: Any = None
    ) -> None:
        """`tracer_provider`: an OpenTelemetry TracerProvider; default the global one (when installed)."""
        self.registry = CollectorRegistry()
        labels = ["grpc_service", "grpc_method"]
        r = self.registry
        self.started = Counter("grpc_server_started_total", "RPCs started.", labels, registry=r)
        self.handled = Counter(
            "grpc_server_handled_total", "RPCs completed, by status code.", [*labels, "grpc_code"], registry=r
        )
        self.latency = Histogram(
            "grpc_server_handling_seconds", "RPC latency.", labels, buckets=LATENCY_BUCKETS, registry=r
        )
        self.in_flight = Gauge("grpc_server_in_flight_rpcs", "RPCs being served now.", labels, registry=r)
        self.ingested = Counter(
            "usage_ingested_events_total",
            "Events of IngestUsageEvents batches, by result (accepted, duplicate, conflict, rejected).",
            ["result"],
            registry=r,
        )
        if engine is not None:
            r.register(PoolCollector(engine))
        self._tracer = _otel_tracer(tracer_provider) if tracing else None
        self._by_method: dict[str, _MethodMetrics] = {}

    @property
    def tracing(self) -> bool:
        return self._tracer is not None

    def watch_answer_cache(self, cache: Any) -> None:
        self.registry.register(AnswerCacheCollector(cache))

    def count_ingested(self, statuses: Iterable[str]) -> None:
        # Counted first: one label lookup per status, not per event (2.5% of an ingest batch's CPU).
        for status, n in collections.Counter(statuses).items():
            self.ingested.labels(status.lower()).inc(n)

    def _children(self, method: str) -> _MethodMetrics:
        """The labelled metrics of one method (a lookup of labels costs more than the update)."""
        children = self._by_method.get(method)
        if children is None:
            service, name = split_method(method)
            children = _MethodMetrics(
                service,
                name,
                self.started.labels(service, name),
                self.in_flight.labels(service, name),
                self.latency.labels(service, name),
                {},
            )
            self._by_method[method] = children
        return children

    @contextlib.contextmanager
    def rpc(self, record: RpcRecord, metadata: Mapping[str, Any]) -> Iterator[RpcRecord]:
        """Count, time, trace and log the RPC run inside; the caller fills `record` as it learns."""
        m = self._children(record.method)
        m.started.inc()
        m.in_flight.inc()
        start = time.perf_counter()
        with self._span(record.method, m.service, m.name, metadata) as span:
            try:
                yield record
            finally:
                elapsed = time.perf_counter() - start
                m.in_flight.dec()
                code = record.code.name
                handled = m.handled.get(code)
                if handled is None:
                    handled = m.handled[code] = self.handled.labels(m.service, m.name, code)
                handled.inc()
                m.latency.observe(elapsed)
                trace_id = _end_span(span, record)
                _log_rpc(record, elapsed, trace_id)

    def _span(
        self, method: str, service: str, name: str, metadata: Mapping[str, Any]
    ) -> contextlib.AbstractContextManager[Any]:
        if self._tracer is None:
            return contextlib.nullcontext()
        from opentelemetry import propagate, trace

        return self._tracer.start_as_current_span(
            method.lstrip("/"),
            context=propagate.extract(dict(metadata)),
            kind=trace.SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
            record_exception=False,  # an abort is an answer, not a crash: the status says it
            set_status_on_exception=False,
        )

    def serve_metrics(self, host: str, port: int) -> MetricsServer:
        """Serve this registry's `/metrics` over HTTP on a daemon thread."""
        httpd, thread = start_http_server(port, addr=host, registry=self.registry)
        return MetricsServer(httpd, thread)


@dataclasses.dataclass
class _MethodMetrics:
    service: str
    name: str
    started: Any
    in_flight: Any
    latency: Any
    handled: dict[str, Any]  # by status code name


@dataclasses.dataclass
class MetricsServer:
    httpd: Any
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.httpd.server_port)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _otel_tracer(provider: Any) -> Any:
    """The tracer of the given provider, else of the global one when an SDK installed it; None
    when nothing would record (each no-op span still cost 25 us a call)."""
    try:
        from opentelemetry import trace
    except ImportError:  # tracing is optional: install opentelemetry-api (+ an SDK) to enable it
        return None
    if provider is None and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return None  # no SDK provider installed before the server was built (see the module doc)
    return trace.get_tracer("usage-service", tracer_provider=provider)


def _end_span(span: Any, record: RpcRecord) -> str:
    """Set the span's gRPC status; the trace id (hex) when the span is recorded, else ""."""
    if span is None:
        return ""
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("rpc.grpc.status_code", record.code.value[0])
    if record.organization:
        span.set_attribute("usage.organization", record.organization)
    if record.code != grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, record.code.name))
    ctx = span.get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else ""


def _log_rpc(record: RpcRecord, elapsed_s: float, trace_id: str) -> None:
    fields: dict[str, Any] = {
        "method": record.method,
        "code": record.code.name,
        "duration_ms": round(elapsed_s * 1000, 3),
        "organization": record.organization,
        "request_id": record.request_id,
        "peer": record.peer,
    }
    if trace_id:
        fields["trace_id"] = trace_id
    if record.code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
        level = logging.ERROR
    elif record.method.startswith(INFRASTRUCTURE_PREFIXES) and record.code == grpc.StatusCode.OK:
        level = logging.DEBUG  # still counted in /metrics
    else:
        level = logging.INFO
    _rpc_log.log(
        level,
        "%s %s %.1fms org=%s request_id=%s",
        record.method,
        record.code.name,
        elapsed_s * 1000,
        record.organization or "-",
        record.request_id,
        extra={"fields": fields},
    )


# Made once: json.dumps with arguments builds a new encoder for every line (one per RPC).
_ENCODE_LINE = json.JSONEncoder(ensure_ascii=False, default=str).encode


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, message, a record's `fields`, any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            # Several processes share stderr with `serve --workers N`: the pid says which wrote the line.
            "pid": record.process,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out["message"] = "rpc" if record.name == RPC_LOGGER else record.getMessage()
            out.update(fields)
        else:
            out["message"] = record.getMessage()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return _ENCODE_LINE(out)


def configure_logging(log_format: str) -> None:
    """Root logging to stderr: `json` (one object per line) or `text`."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    elif log_format == "text":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    else:
        raise ValueError(f"log format must be json or text, not {log_format!r}")
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    # What no line shows is not computed for every record (the logging HOWTO's "Optimization"):
    # the caller's file and line (a walk of the stack), thread names, multiprocessing names.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging.getLogger("alembic").setLevel(logging.WARNING)
