import datetime

from buf.validate import validate_pb2 as _validate_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from usage.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VoidUsageEventsRequest(_message.Message):
    __slots__ = ("event_ids", "reason")
    EVENT_IDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    event_ids: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    def __init__(self, event_ids: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ...) -> None: ...

class AmendUsageEventRequest(_message.Message):
    __slots__ = ("event_id", "event", "update_mask", "reason", "expected_version_id")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    event: _events_pb2.UsageEventInput
    update_mask: _field_mask_pb2.FieldMask
    reason: str
    expected_version_id: str
    def __init__(self, event_id: _Optional[str] = ..., event: _Optional[_Union[_events_pb2.UsageEventInput, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., reason: _Optional[str] = ..., expected_version_id: _Optional[str] = ...) -> None: ...

class AmendUsageEventResponse(_message.Message):
    __slots__ = ("event", "replaced_version_id", "amend")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    REPLACED_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    AMEND_FIELD_NUMBER: _ClassVar[int]
    event: _events_pb2.UsageEvent
    replaced_version_id: str
    amend: Correction
    def __init__(self, event: _Optional[_Union[_events_pb2.UsageEvent, _Mapping]] = ..., replaced_version_id: _Optional[str] = ..., amend: _Optional[_Union[Correction, _Mapping]] = ...) -> None: ...

class Correction(_message.Message):
    __slots__ = ("corrected_at", "corrected_by", "reason")
    CORRECTED_AT_FIELD_NUMBER: _ClassVar[int]
    CORRECTED_BY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    corrected_at: _timestamp_pb2.Timestamp
    corrected_by: str
    reason: str
    def __init__(self, corrected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., corrected_by: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class VoidResult(_message.Message):
    __slots__ = ("event_id", "status", "void")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VOID_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    status: str
    void: Correction
    def __init__(self, event_id: _Optional[str] = ..., status: _Optional[str] = ..., void: _Optional[_Union[Correction, _Mapping]] = ...) -> None: ...

class VoidUsageEventsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[VoidResult]
    def __init__(self, results: _Optional[_Iterable[_Union[VoidResult, _Mapping]]] = ...) -> None: ...

class GetUsageEventHistoryRequest(_message.Message):
    __slots__ = ("event_id",)
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    def __init__(self, event_id: _Optional[str] = ...) -> None: ...

class UsageEventVersion(_message.Message):
    __slots__ = ("event", "voided", "replaced_by")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    VOIDED_FIELD_NUMBER: _ClassVar[int]
    REPLACED_BY_FIELD_NUMBER: _ClassVar[int]
    event: _events_pb2.UsageEvent
    voided: Correction
    replaced_by: str
    def __init__(self, event: _Optional[_Union[_events_pb2.UsageEvent, _Mapping]] = ..., voided: _Optional[_Union[Correction, _Mapping]] = ..., replaced_by: _Optional[str] = ...) -> None: ...

class GetUsageEventHistoryResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[UsageEventVersion]
    def __init__(self, versions: _Optional[_Iterable[_Union[UsageEventVersion, _Mapping]]] = ...) -> None: ...
