import datetime

from buf.validate import validate_pb2 as _validate_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UsageEvent(_message.Message):
    __slots__ = ("id", "organization_id", "customer_id", "product_id", "subscription_id", "metric_key", "price_key", "quantity", "timestamp", "ingested_at", "idempotency_key", "external_cost_amount", "external_cost_currency", "wallet_currency", "properties")
    ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    METRIC_KEY_FIELD_NUMBER: _ClassVar[int]
    PRICE_KEY_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    INGESTED_AT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_COST_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_COST_CURRENCY_FIELD_NUMBER: _ClassVar[int]
    WALLET_CURRENCY_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    id: str
    organization_id: str
    customer_id: str
    product_id: str
    subscription_id: str
    metric_key: str
    price_key: str
    quantity: str
    timestamp: _timestamp_pb2.Timestamp
    ingested_at: _timestamp_pb2.Timestamp
    idempotency_key: str
    external_cost_amount: str
    external_cost_currency: str
    wallet_currency: str
    properties: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., organization_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., product_id: _Optional[str] = ..., subscription_id: _Optional[str] = ..., metric_key: _Optional[str] = ..., price_key: _Optional[str] = ..., quantity: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ingested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., external_cost_amount: _Optional[str] = ..., external_cost_currency: _Optional[str] = ..., wallet_currency: _Optional[str] = ..., properties: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class UsageEventInput(_message.Message):
    __slots__ = ("customer_id", "metric_key", "timestamp", "quantity", "idempotency_key", "product_id", "subscription_id", "price_key", "external_cost_amount", "external_cost_currency", "wallet_currency", "properties")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    METRIC_KEY_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_KEY_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_COST_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_COST_CURRENCY_FIELD_NUMBER: _ClassVar[int]
    WALLET_CURRENCY_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    metric_key: str
    timestamp: _timestamp_pb2.Timestamp
    quantity: str
    idempotency_key: str
    product_id: str
    subscription_id: str
    price_key: str
    external_cost_amount: str
    external_cost_currency: str
    wallet_currency: str
    properties: _struct_pb2.Struct
    def __init__(self, customer_id: _Optional[str] = ..., metric_key: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., quantity: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., product_id: _Optional[str] = ..., subscription_id: _Optional[str] = ..., price_key: _Optional[str] = ..., external_cost_amount: _Optional[str] = ..., external_cost_currency: _Optional[str] = ..., wallet_currency: _Optional[str] = ..., properties: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
