import datetime

from buf.validate import validate_pb2 as _validate_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from usage.v1 import events_pb2 as _events_pb2
from usage.v1 import pagination_pb2 as _pagination_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListCustomerUsageEventsRequest(_message.Message):
    __slots__ = ("id", "aggregator_id", "start_date", "end_date", "aggregator_filter_id", "take", "skip", "as_of")
    ID_FIELD_NUMBER: _ClassVar[int]
    AGGREGATOR_ID_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    AGGREGATOR_FILTER_ID_FIELD_NUMBER: _ClassVar[int]
    TAKE_FIELD_NUMBER: _ClassVar[int]
    SKIP_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    id: str
    aggregator_id: str
    start_date: _timestamp_pb2.Timestamp
    end_date: _timestamp_pb2.Timestamp
    aggregator_filter_id: str
    take: int
    skip: int
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., aggregator_id: _Optional[str] = ..., start_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., aggregator_filter_id: _Optional[str] = ..., take: _Optional[int] = ..., skip: _Optional[int] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PageMeta(_message.Message):
    __slots__ = ("total", "taken", "skipped")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    TAKEN_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    total: int
    taken: int
    skipped: int
    def __init__(self, total: _Optional[int] = ..., taken: _Optional[int] = ..., skipped: _Optional[int] = ...) -> None: ...

class CustomerUsageEvent(_message.Message):
    __slots__ = ("id", "name", "timestamp", "payload")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    timestamp: _timestamp_pb2.Timestamp
    payload: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ListCustomerUsageEventsResponse(_message.Message):
    __slots__ = ("meta", "data", "as_of")
    META_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    meta: PageMeta
    data: _containers.RepeatedCompositeFieldContainer[CustomerUsageEvent]
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, meta: _Optional[_Union[PageMeta, _Mapping]] = ..., data: _Optional[_Iterable[_Union[CustomerUsageEvent, _Mapping]]] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListUsageEventsRequest(_message.Message):
    __slots__ = ("limit", "cursor", "customer_id", "product_id", "subscription_id", "metric_key", "occurred_after", "occurred_before", "as_of")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    METRIC_KEY_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AFTER_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    limit: int
    cursor: str
    customer_id: str
    product_id: str
    subscription_id: str
    metric_key: _containers.RepeatedScalarFieldContainer[str]
    occurred_after: _timestamp_pb2.Timestamp
    occurred_before: _timestamp_pb2.Timestamp
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, limit: _Optional[int] = ..., cursor: _Optional[str] = ..., customer_id: _Optional[str] = ..., product_id: _Optional[str] = ..., subscription_id: _Optional[str] = ..., metric_key: _Optional[_Iterable[str]] = ..., occurred_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., occurred_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListUsageEventsResponse(_message.Message):
    __slots__ = ("data", "pagination", "as_of")
    DATA_FIELD_NUMBER: _ClassVar[int]
    PAGINATION_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[_events_pb2.UsageEvent]
    pagination: _pagination_pb2.Pagination
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, data: _Optional[_Iterable[_Union[_events_pb2.UsageEvent, _Mapping]]] = ..., pagination: _Optional[_Union[_pagination_pb2.Pagination, _Mapping]] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExportUsageEventsRequest(_message.Message):
    __slots__ = ("customer_id", "product_id", "subscription_id", "metric_key", "occurred_after", "occurred_before", "order", "chunk_size", "resume_token", "as_of")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    METRIC_KEY_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AFTER_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    product_id: str
    subscription_id: str
    metric_key: _containers.RepeatedScalarFieldContainer[str]
    occurred_after: _timestamp_pb2.Timestamp
    occurred_before: _timestamp_pb2.Timestamp
    order: str
    chunk_size: int
    resume_token: str
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, customer_id: _Optional[str] = ..., product_id: _Optional[str] = ..., subscription_id: _Optional[str] = ..., metric_key: _Optional[_Iterable[str]] = ..., occurred_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., occurred_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., order: _Optional[str] = ..., chunk_size: _Optional[int] = ..., resume_token: _Optional[str] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExportUsageEventsResponse(_message.Message):
    __slots__ = ("data", "resume_token", "as_of")
    DATA_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[_events_pb2.UsageEvent]
    resume_token: str
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, data: _Optional[_Iterable[_Union[_events_pb2.UsageEvent, _Mapping]]] = ..., resume_token: _Optional[str] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExplainUsageEventRequest(_message.Message):
    __slots__ = ("event_id", "aggregator_id", "aggregator_filter_id", "customer_id", "start_date", "end_date", "as_of")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGGREGATOR_ID_FIELD_NUMBER: _ClassVar[int]
    AGGREGATOR_FILTER_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    aggregator_id: str
    aggregator_filter_id: str
    customer_id: str
    start_date: _timestamp_pb2.Timestamp
    end_date: _timestamp_pb2.Timestamp
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, event_id: _Optional[str] = ..., aggregator_id: _Optional[str] = ..., aggregator_filter_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., start_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExplainUsageEventResponse(_message.Message):
    __slots__ = ("counts", "event", "checks", "as_of")
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    counts: bool
    event: _events_pb2.UsageEvent
    checks: _containers.RepeatedCompositeFieldContainer[ExplanationCheck]
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, counts: _Optional[bool] = ..., event: _Optional[_Union[_events_pb2.UsageEvent, _Mapping]] = ..., checks: _Optional[_Iterable[_Union[ExplanationCheck, _Mapping]]] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExplanationCheck(_message.Message):
    __slots__ = ("name", "passed", "detail", "conditional", "conditions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    CONDITIONAL_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    passed: bool
    detail: str
    conditional: str
    conditions: _containers.RepeatedCompositeFieldContainer[ConditionVerdict]
    def __init__(self, name: _Optional[str] = ..., passed: _Optional[bool] = ..., detail: _Optional[str] = ..., conditional: _Optional[str] = ..., conditions: _Optional[_Iterable[_Union[ConditionVerdict, _Mapping]]] = ...) -> None: ...

class ConditionVerdict(_message.Message):
    __slots__ = ("property", "operator", "expected", "present", "actual", "passed")
    PROPERTY_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    property: str
    operator: str
    expected: _struct_pb2.Value
    present: bool
    actual: _struct_pb2.Value
    passed: bool
    def __init__(self, property: _Optional[str] = ..., operator: _Optional[str] = ..., expected: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., present: _Optional[bool] = ..., actual: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., passed: _Optional[bool] = ...) -> None: ...

class AggregateUsageRequest(_message.Message):
    __slots__ = ("bucket", "since", "until", "metric", "group_by", "customer_id", "product_id", "subscription_id", "metric_key", "top", "time_zone", "as_of")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    METRIC_KEY_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    metric: str
    group_by: str
    customer_id: str
    product_id: str
    subscription_id: str
    metric_key: _containers.RepeatedScalarFieldContainer[str]
    top: int
    time_zone: str
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, bucket: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metric: _Optional[str] = ..., group_by: _Optional[str] = ..., customer_id: _Optional[str] = ..., product_id: _Optional[str] = ..., subscription_id: _Optional[str] = ..., metric_key: _Optional[_Iterable[str]] = ..., top: _Optional[int] = ..., time_zone: _Optional[str] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AggregatePoint(_message.Message):
    __slots__ = ("start", "value", "exact_value")
    START_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXACT_VALUE_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    value: float
    exact_value: str
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., value: _Optional[float] = ..., exact_value: _Optional[str] = ...) -> None: ...

class AggregateSeries(_message.Message):
    __slots__ = ("key", "other", "total", "points", "exact_total")
    KEY_FIELD_NUMBER: _ClassVar[int]
    OTHER_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    EXACT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    key: str
    other: bool
    total: float
    points: _containers.RepeatedCompositeFieldContainer[AggregatePoint]
    exact_total: str
    def __init__(self, key: _Optional[str] = ..., other: _Optional[bool] = ..., total: _Optional[float] = ..., points: _Optional[_Iterable[_Union[AggregatePoint, _Mapping]]] = ..., exact_total: _Optional[str] = ...) -> None: ...

class AggregateUsageResponse(_message.Message):
    __slots__ = ("bucket", "group_by", "metric", "series", "since", "until", "as_of")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    group_by: str
    metric: str
    series: _containers.RepeatedCompositeFieldContainer[AggregateSeries]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, bucket: _Optional[str] = ..., group_by: _Optional[str] = ..., metric: _Optional[str] = ..., series: _Optional[_Iterable[_Union[AggregateSeries, _Mapping]]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class IngestUsageEventsRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_events_pb2.UsageEventInput]
    def __init__(self, events: _Optional[_Iterable[_Union[_events_pb2.UsageEventInput, _Mapping]]] = ...) -> None: ...

class EventViolation(_message.Message):
    __slots__ = ("field", "description")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    field: str
    description: str
    def __init__(self, field: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class IngestResult(_message.Message):
    __slots__ = ("index", "status", "event_id", "violations")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    index: int
    status: str
    event_id: str
    violations: _containers.RepeatedCompositeFieldContainer[EventViolation]
    def __init__(self, index: _Optional[int] = ..., status: _Optional[str] = ..., event_id: _Optional[str] = ..., violations: _Optional[_Iterable[_Union[EventViolation, _Mapping]]] = ...) -> None: ...

class IngestUsageEventsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[IngestResult]
    def __init__(self, results: _Optional[_Iterable[_Union[IngestResult, _Mapping]]] = ...) -> None: ...

class GetCustomerUsageRequest(_message.Message):
    __slots__ = ("id", "start_date", "end_date", "aggregator_id", "aggregator_filter_id", "limit", "cursor", "as_of")
    ID_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    AGGREGATOR_ID_FIELD_NUMBER: _ClassVar[int]
    AGGREGATOR_FILTER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    id: str
    start_date: _timestamp_pb2.Timestamp
    end_date: _timestamp_pb2.Timestamp
    aggregator_id: str
    aggregator_filter_id: str
    limit: int
    cursor: str
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., start_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., aggregator_id: _Optional[str] = ..., aggregator_filter_id: _Optional[str] = ..., limit: _Optional[int] = ..., cursor: _Optional[str] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AggregatorUsage(_message.Message):
    __slots__ = ("aggregator_id", "name", "event_type", "operation", "property", "unit_name", "aggregator_filter_id", "total", "exact_total", "count", "unsummed_count")
    AGGREGATOR_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    PROPERTY_FIELD_NUMBER: _ClassVar[int]
    UNIT_NAME_FIELD_NUMBER: _ClassVar[int]
    AGGREGATOR_FILTER_ID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    EXACT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    UNSUMMED_COUNT_FIELD_NUMBER: _ClassVar[int]
    aggregator_id: str
    name: str
    event_type: str
    operation: str
    property: str
    unit_name: str
    aggregator_filter_id: str
    total: float
    exact_total: str
    count: int
    unsummed_count: int
    def __init__(self, aggregator_id: _Optional[str] = ..., name: _Optional[str] = ..., event_type: _Optional[str] = ..., operation: _Optional[str] = ..., property: _Optional[str] = ..., unit_name: _Optional[str] = ..., aggregator_filter_id: _Optional[str] = ..., total: _Optional[float] = ..., exact_total: _Optional[str] = ..., count: _Optional[int] = ..., unsummed_count: _Optional[int] = ...) -> None: ...

class GetCustomerUsageResponse(_message.Message):
    __slots__ = ("customer_id", "start_date", "end_date", "data", "pagination", "as_of")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    PAGINATION_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    start_date: _timestamp_pb2.Timestamp
    end_date: _timestamp_pb2.Timestamp
    data: _containers.RepeatedCompositeFieldContainer[AggregatorUsage]
    pagination: _pagination_pb2.Pagination
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, customer_id: _Optional[str] = ..., start_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., data: _Optional[_Iterable[_Union[AggregatorUsage, _Mapping]]] = ..., pagination: _Optional[_Union[_pagination_pb2.Pagination, _Mapping]] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetAggregatorTimeSeriesRequest(_message.Message):
    __slots__ = ("aggregator_id", "start_date", "end_date", "bucket", "customer_id", "aggregator_filter_id", "time_zone", "as_of")
    AGGREGATOR_ID_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    AGGREGATOR_FILTER_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    aggregator_id: str
    start_date: _timestamp_pb2.Timestamp
    end_date: _timestamp_pb2.Timestamp
    bucket: str
    customer_id: str
    aggregator_filter_id: str
    time_zone: str
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, aggregator_id: _Optional[str] = ..., start_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., bucket: _Optional[str] = ..., customer_id: _Optional[str] = ..., aggregator_filter_id: _Optional[str] = ..., time_zone: _Optional[str] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetAggregatorTimeSeriesResponse(_message.Message):
    __slots__ = ("aggregator_id", "bucket", "time_zone", "start_date", "end_date", "points", "total", "exact_total", "as_of")
    AGGREGATOR_ID_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    EXACT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    aggregator_id: str
    bucket: str
    time_zone: str
    start_date: _timestamp_pb2.Timestamp
    end_date: _timestamp_pb2.Timestamp
    points: _containers.RepeatedCompositeFieldContainer[AggregatePoint]
    total: float
    exact_total: str
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, aggregator_id: _Optional[str] = ..., bucket: _Optional[str] = ..., time_zone: _Optional[str] = ..., start_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., points: _Optional[_Iterable[_Union[AggregatePoint, _Mapping]]] = ..., total: _Optional[float] = ..., exact_total: _Optional[str] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListAggregatorUsageByCustomerRequest(_message.Message):
    __slots__ = ("aggregator_id", "start_date", "end_date", "aggregator_filter_id", "take", "skip", "as_of")
    AGGREGATOR_ID_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    AGGREGATOR_FILTER_ID_FIELD_NUMBER: _ClassVar[int]
    TAKE_FIELD_NUMBER: _ClassVar[int]
    SKIP_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    aggregator_id: str
    start_date: _timestamp_pb2.Timestamp
    end_date: _timestamp_pb2.Timestamp
    aggregator_filter_id: str
    take: int
    skip: int
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, aggregator_id: _Optional[str] = ..., start_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., aggregator_filter_id: _Optional[str] = ..., take: _Optional[int] = ..., skip: _Optional[int] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CustomerUsageTotal(_message.Message):
    __slots__ = ("customer_id", "total", "exact_total", "count", "unsummed_count")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    EXACT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    UNSUMMED_COUNT_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    total: float
    exact_total: str
    count: int
    unsummed_count: int
    def __init__(self, customer_id: _Optional[str] = ..., total: _Optional[float] = ..., exact_total: _Optional[str] = ..., count: _Optional[int] = ..., unsummed_count: _Optional[int] = ...) -> None: ...

class ListAggregatorUsageByCustomerResponse(_message.Message):
    __slots__ = ("meta", "data", "start_date", "end_date", "as_of")
    META_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    meta: PageMeta
    data: _containers.RepeatedCompositeFieldContainer[CustomerUsageTotal]
    start_date: _timestamp_pb2.Timestamp
    end_date: _timestamp_pb2.Timestamp
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, meta: _Optional[_Union[PageMeta, _Mapping]] = ..., data: _Optional[_Iterable[_Union[CustomerUsageTotal, _Mapping]]] = ..., start_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_date: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
