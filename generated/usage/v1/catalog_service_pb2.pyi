from buf.validate import validate_pb2 as _validate_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from usage.v1 import catalog_pb2 as _catalog_pb2
from usage.v1 import pagination_pb2 as _pagination_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateCustomerRequest(_message.Message):
    __slots__ = ("customer",)
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    customer: _catalog_pb2.Customer
    def __init__(self, customer: _Optional[_Union[_catalog_pb2.Customer, _Mapping]] = ...) -> None: ...

class CreateCustomerResponse(_message.Message):
    __slots__ = ("customer",)
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    customer: _catalog_pb2.Customer
    def __init__(self, customer: _Optional[_Union[_catalog_pb2.Customer, _Mapping]] = ...) -> None: ...

class GetCustomerRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetCustomerResponse(_message.Message):
    __slots__ = ("customer",)
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    customer: _catalog_pb2.Customer
    def __init__(self, customer: _Optional[_Union[_catalog_pb2.Customer, _Mapping]] = ...) -> None: ...

class ListCustomersRequest(_message.Message):
    __slots__ = ("limit", "cursor")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    limit: int
    cursor: str
    def __init__(self, limit: _Optional[int] = ..., cursor: _Optional[str] = ...) -> None: ...

class ListCustomersResponse(_message.Message):
    __slots__ = ("data", "pagination")
    DATA_FIELD_NUMBER: _ClassVar[int]
    PAGINATION_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[_catalog_pb2.Customer]
    pagination: _pagination_pb2.Pagination
    def __init__(self, data: _Optional[_Iterable[_Union[_catalog_pb2.Customer, _Mapping]]] = ..., pagination: _Optional[_Union[_pagination_pb2.Pagination, _Mapping]] = ...) -> None: ...

class CreateAggregatorRequest(_message.Message):
    __slots__ = ("aggregator",)
    AGGREGATOR_FIELD_NUMBER: _ClassVar[int]
    aggregator: _catalog_pb2.Aggregator
    def __init__(self, aggregator: _Optional[_Union[_catalog_pb2.Aggregator, _Mapping]] = ...) -> None: ...

class CreateAggregatorResponse(_message.Message):
    __slots__ = ("aggregator",)
    AGGREGATOR_FIELD_NUMBER: _ClassVar[int]
    aggregator: _catalog_pb2.Aggregator
    def __init__(self, aggregator: _Optional[_Union[_catalog_pb2.Aggregator, _Mapping]] = ...) -> None: ...

class GetAggregatorRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetAggregatorResponse(_message.Message):
    __slots__ = ("aggregator",)
    AGGREGATOR_FIELD_NUMBER: _ClassVar[int]
    aggregator: _catalog_pb2.Aggregator
    def __init__(self, aggregator: _Optional[_Union[_catalog_pb2.Aggregator, _Mapping]] = ...) -> None: ...

class ListAggregatorsRequest(_message.Message):
    __slots__ = ("limit", "cursor")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    limit: int
    cursor: str
    def __init__(self, limit: _Optional[int] = ..., cursor: _Optional[str] = ...) -> None: ...

class ListAggregatorsResponse(_message.Message):
    __slots__ = ("data", "pagination")
    DATA_FIELD_NUMBER: _ClassVar[int]
    PAGINATION_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[_catalog_pb2.Aggregator]
    pagination: _pagination_pb2.Pagination
    def __init__(self, data: _Optional[_Iterable[_Union[_catalog_pb2.Aggregator, _Mapping]]] = ..., pagination: _Optional[_Union[_pagination_pb2.Pagination, _Mapping]] = ...) -> None: ...

class UpdateAggregatorRequest(_message.Message):
    __slots__ = ("aggregator", "update_mask")
    AGGREGATOR_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    aggregator: _catalog_pb2.Aggregator
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, aggregator: _Optional[_Union[_catalog_pb2.Aggregator, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateAggregatorResponse(_message.Message):
    __slots__ = ("aggregator",)
    AGGREGATOR_FIELD_NUMBER: _ClassVar[int]
    aggregator: _catalog_pb2.Aggregator
    def __init__(self, aggregator: _Optional[_Union[_catalog_pb2.Aggregator, _Mapping]] = ...) -> None: ...

class DeleteAggregatorRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteAggregatorResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateAggregatorFilterRequest(_message.Message):
    __slots__ = ("aggregator_filter",)
    AGGREGATOR_FILTER_FIELD_NUMBER: _ClassVar[int]
    aggregator_filter: _catalog_pb2.AggregatorFilter
    def __init__(self, aggregator_filter: _Optional[_Union[_catalog_pb2.AggregatorFilter, _Mapping]] = ...) -> None: ...

class CreateAggregatorFilterResponse(_message.Message):
    __slots__ = ("aggregator_filter",)
    AGGREGATOR_FILTER_FIELD_NUMBER: _ClassVar[int]
    aggregator_filter: _catalog_pb2.AggregatorFilter
    def __init__(self, aggregator_filter: _Optional[_Union[_catalog_pb2.AggregatorFilter, _Mapping]] = ...) -> None: ...

class ListAggregatorFiltersRequest(_message.Message):
    __slots__ = ("aggregator_id",)
    AGGREGATOR_ID_FIELD_NUMBER: _ClassVar[int]
    aggregator_id: str
    def __init__(self, aggregator_id: _Optional[str] = ...) -> None: ...

class ListAggregatorFiltersResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedCompositeFieldContainer[_catalog_pb2.AggregatorFilter]
    def __init__(self, data: _Optional[_Iterable[_Union[_catalog_pb2.AggregatorFilter, _Mapping]]] = ...) -> None: ...

class DeleteAggregatorFilterRequest(_message.Message):
    __slots__ = ("aggregator_id", "id")
    AGGREGATOR_ID_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    aggregator_id: str
    id: str
    def __init__(self, aggregator_id: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class DeleteAggregatorFilterResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
