"""UsageService adapter: validates and translates requests, calls the logic, builds responses."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from usage.v1 import usage_service_pb2 as pb
from usage.v1 import usage_service_pb2_grpc as pb_grpc

from server import wire
from server.deadline import Deadline
from server.errors import FieldViolation, InvalidArgument
from server.logic.aggregator_usage import AggregatorUsage
from server.logic.buckets import to_us
from server.logic.explain import Explainer, ExplainRequest
from server.logic.ingest import EventDraft, Ingestion
from server.logic.queries import (
    AggregateRequest,
    AggregateResult,
    CustomerEventsRequest,
    ExportRequest,
    FilterRequest,
    ListEventsRequest,
    UsageQueries,
)
from server.rpc import convert, usage_values, validation
from server.rpc.convert import optional
from server.rpc.interceptors import current_org


def _filters(
    request: pb.ListUsageEventsRequest | pb.AggregateUsageRequest | pb.ExportUsageEventsRequest,
) -> FilterRequest:
    return FilterRequest(
        customer_id=optional(request, "customer_id"),
        product_id=optional(request, "product_id"),
        subscription_id=optional(request, "subscription_id"),
        metric_key=tuple(request.metric_key),
    )


class UsageServicer(pb_grpc.UsageServiceServicer):
    def __init__(
        self,
        queries: UsageQueries,
        explainer: Explainer,
        ingestion: Ingestion,
        query_timeout_s: float,
        on_ingested: Callable[[list[str]], None] | None = None,
        *,
        usage: AggregatorUsage,
    ) -> None:
        self._queries = queries
        self._usage = usage
        self._ingestion = ingestion
        self._timeout = query_timeout_s
        self._on_ingested = on_ingested  # gets the statuses of each ingested batch (metrics)
        self._explainer = explainer

    def ListCustomerUsageEvents(self, request, context):  # noqa: N802 (gRPC method name)
        validation.check(request)
        page = self._queries.list_customer_events(
            current_org(),
            CustomerEventsRequest(
                customer_id=request.id,
                aggregator_id=request.aggregator_id,
                start_us=convert.bound_to_us(request.start_date),
                end_us=convert.bound_to_us(request.end_date),
                aggregator_filter_id=optional(request, "aggregator_filter_id"),
                take=optional(request, "take"),
                skip=optional(request, "skip"),
                as_of_us=convert.as_of_us(request),
            ),
            Deadline.of_context(context, self._timeout),
        )
        # The response as the bytes it serializes to, from the events' stored forms (server/wire.py).
        return wire.customer_page_response(page.events, page.total, page.skipped, page.as_of_us)

    def ListUsageEvents(self, request, context):  # noqa: N802
        validation.check(request)
        page = self._queries.list_events(
            current_org(),
            ListEventsRequest(
                filters=_filters(request),
                occurred_after_us=_bound(request, "occurred_after"),
                occurred_before_us=_bound(request, "occurred_before"),
                limit=optional(request, "limit"),
                cursor=request.cursor,
                as_of_us=convert.as_of_us(request),
            ),
            Deadline.of_context(context, self._timeout),
        )
        # The response as the bytes it serializes to: the events as stored (server/wire.py).
        return wire.list_response(page.events, page.cursor, page.as_of_us)

    def ExportUsageEvents(self, request, context):  # noqa: N802
        validation.check(request)
        chunks = self._queries.export_events(
            current_org(),
            ExportRequest(
                filters=_filters(request),
                occurred_after_us=_bound(request, "occurred_after"),
                occurred_before_us=_bound(request, "occurred_before"),
                oldest_first=request.order == "oldest_first",
                chunk_size=optional(request, "chunk_size"),
                resume_token=request.resume_token,
                as_of_us=convert.as_of_us(request),
            ),
            Deadline.of_stream(context),
        )
        # Each chunk as the bytes it serializes to; grpc pulls the next one only once the previous
        # one is sent, so a slow reader holds the stream back rather than filling the server's memory.
        return (wire.export_chunk(chunk.events, chunk.cursor, chunk.as_of_us) for chunk in chunks)

    def ExplainUsageEvent(self, request, context):  # noqa: N802
        validation.check(request)
        explanation = self._explainer.explain(
            current_org(),
            ExplainRequest(
                event_id=request.event_id,
                aggregator_id=request.aggregator_id,
                aggregator_filter_id=optional(request, "aggregator_filter_id"),
                customer_id=optional(request, "customer_id"),
                start_us=_bound(request, "start_date"),
                end_us=_bound(request, "end_date"),
                as_of_us=convert.as_of_us(request),
            ),
            Deadline.of_context(context, self._timeout),
        )
        (event,) = wire.decode([explanation.wire])
        response = pb.ExplainUsageEventResponse(
            counts=explanation.counts, event=event, as_of=convert.us_to_ts(explanation.as_of_us)
        )
        for check in explanation.checks:
            out = response.checks.add(
                name=check.name, passed=check.passed, detail=check.detail, conditional=check.conditional
            )
            for condition, passed in check.conditions:
                verdict = out.conditions.add(
                    property=condition.property, operator=condition.operator, passed=passed
                )
                if condition.operator not in ("is_null", "is_not_null"):
                    verdict.expected.CopyFrom(convert.python_to_value(condition.value))
                if condition.property in event.properties.fields:
                    verdict.present = True
                    verdict.actual.CopyFrom(event.properties.fields[condition.property])
        return response

    def AggregateUsage(self, request, context):  # noqa: N802
        validation.check(request)
        # The serialized response: it may come from the answer cache as it was sent before.
        return self._queries.aggregate_encoded(
            current_org(),
            AggregateRequest(
                bucket=request.bucket,
                since_us=convert.bound_to_us(request.since),
                until_us=convert.bound_to_us(request.until) if request.HasField("until") else None,
                metric=request.metric,
                group_by=request.group_by,
                filters=_filters(request),
                top=optional(request, "top"),
                time_zone=request.time_zone,
                as_of_us=convert.as_of_us(request),
            ),
            Deadline.of_context(context, self._timeout),
            dt.datetime.now(dt.UTC),
            _encode_aggregate,
        )

    def GetCustomerUsage(self, request, context):  # noqa: N802
        validation.check(request)
        return usage_values.customer_usage(self._usage, request, Deadline.of_context(context, self._timeout))

    def GetAggregatorTimeSeries(self, request, context):  # noqa: N802
        validation.check(request)
        return usage_values.time_series(self._usage, request, Deadline.of_context(context, self._timeout))

    def ListAggregatorUsageByCustomer(self, request, context):  # noqa: N802
        validation.check(request)
        return usage_values.by_customer(self._usage, request, Deadline.of_context(context, self._timeout))

    def IngestUsageEvents(self, request, context):  # noqa: N802
        # Violations inside events[i] reject that event only; any other violation rejects the batch.
        by_event: dict[int, list[FieldViolation]] = {}
        batch_level: list[FieldViolation] = []
        for v in validation.violations(request, json_checked=True):
            head, _, rest = v.field.partition(".")
            if head.startswith("events[") and rest:
                by_event.setdefault(int(head[7:-1]), []).append(FieldViolation(rest, v.description))
            else:
                batch_level.append(v)
        if batch_level:
            raise InvalidArgument.of(batch_level)
        drafts: list[EventDraft | tuple[FieldViolation, ...]] = []
        for i, e in enumerate(request.events):
            if i in by_event:
                drafts.append(tuple(by_event[i]))
                continue
            drafts.append(convert.event_draft(e))
        results = self._ingestion.ingest(
            current_org(), drafts, time.time_ns() // 1000, Deadline.of_context(context, self._timeout)
        )
        if self._on_ingested is not None:
            self._on_ingested([r.status for r in results])
        # Filled in place: a third of the cost of building each IngestResult and copying it in.
        response = pb.IngestUsageEventsResponse()
        add = response.results.add
        for r in results:
            item = add(index=r.index, status=r.status, event_id=r.event_id)
            for v in r.violations:
                item.violations.add(field=v.field, description=v.description)
        return response


def _bound(request: Any, field: str) -> int | None:
    """An optional window bound in microseconds (rounded up: see convert.bound_to_us)."""
    return convert.bound_to_us(getattr(request, field)) if request.HasField(field) else None


def _encode_aggregate(result: AggregateResult) -> bytes:
    response = pb.AggregateUsageResponse(
        bucket=result.bucket,
        group_by=result.group_by,
        metric=result.metric,
        since=convert.us_to_ts(to_us(result.since)),
        until=convert.us_to_ts(to_us(result.until)),
        as_of=convert.us_to_ts(result.as_of_us),
    )
    starts = [convert.us_to_ts(to_us(s)) for s in result.starts]
    for s in result.series:
        series = response.series.add(key=s.key, other=s.other, total=float(s.total), exact_total=s.total)
        points = series.points
        for start, value in zip(starts, s.values, strict=True):
            points.add(start=start, value=float(value), exact_value=value)
    return response.SerializeToString()
