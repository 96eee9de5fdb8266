"""Server interceptor: authentication (every RPC but health and reflection), the one mapping of
domain errors to gRPC statuses with rich details, and the observation of each unary RPC (metrics, a
JSON log line, a trace span; see server/observability.py) under a request id that is returned to the
caller as the `x-request-id` response header. Servicers read the caller's organization with
`current_org()` (and the token's caller claim with `current_caller()`) and never set codes themselves.

Requests are deserialized here, inside the observed call, rather than by grpc: bytes that do not
parse (invalid UTF-8 in a string, a truncated message, nesting past protobuf's depth limit) are
INVALID_ARGUMENT saying so, where grpc would answer INTERNAL "Exception deserializing request!".
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_status import rpc_status

from server.auth import Caller, TokenVerifier, single_authorization
from server.errors import Internal, InvalidArgument, RequestTooLarge, ServiceError, clip, status_proto
from server.observability import (
    INFRASTRUCTURE_PREFIXES,
    REQUEST_ID_HEADER,
    Observability,
    RpcRecord,
    request_id,
)
from server.rpc.admission import Admission, StreamBound

log = logging.getLogger(__name__)

_CALLER: contextvars.ContextVar[Caller] = contextvars.ContextVar("usage_caller")


def current_org() -> str:
    """The organization of the RPC being served (set by the auth interceptor)."""
    return _CALLER.get().organization


def current_caller() -> str:
    """The caller claim of the RPC's token, "" when it has none (set by the auth interceptor)."""
    return _CALLER.get().caller


# What protobuf's decoder (upb) says, in the words of the API.
_DECODE_PROBLEMS = (
    ("UTF-8", "a string field is not valid UTF-8"),
    ("MaxDepth", "messages are nested more than 100 levels deep"),
    ("corrupt", "the message is truncated or corrupt"),
)


# The largest request message each RPC reads, in bytes: far more than the bounds of its fields need
# (a filter of 16 KiB as JSON may take 60 KiB as protobuf), far less than the server's message limit.
# Checked before the message is parsed and validated, which costs several times its size: 20 requests
# of 15 MB (aggregators with 1 MB filter values) left the process at 450 MB. IngestUsageEvents (5000
# events) reads up to the server's message limit.
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024
MAX_REQUEST_BYTES: dict[str, int | None] = {
    "/usage.v1.UsageService/IngestUsageEvents": None,
    **dict.fromkeys(
        (
            "/usage.v1.UsageService/ListUsageEvents",  # 100 metric keys of 4096 characters
            "/usage.v1.UsageService/ExportUsageEvents",  # the same filters
            "/usage.v1.UsageService/AggregateUsage",
            "/usage.v1.CatalogService/CreateAggregator",
            "/usage.v1.CatalogService/UpdateAggregator",
            "/usage.v1.CatalogService/CreateAggregatorFilter",
            "/usage.v1.CorrectionService/VoidUsageEvents",  # 1000 ids of 64 characters, a reason
        ),
        1024 * 1024,
    ),
}


def deserialize(deserializer: Callable[[bytes], Any] | None, raw: bytes, method: str) -> Any:
    """The request message of `raw` bytes, or InvalidArgument saying why they do not parse
    (RequestTooLarge past the RPC's size bound)."""
    if deserializer is None:
        return raw
    limit = MAX_REQUEST_BYTES.get(method, DEFAULT_MAX_REQUEST_BYTES)
    if limit is not None and len(raw) > limit:
        raise RequestTooLarge(
            f"the request of {method.rsplit('/', 1)[-1]} takes {len(raw):,} bytes, over its limit of "
            f"{limit:,}: see the bounds of its fields"
        )
    try:
        return deserializer(raw)
    except DecodeError as exc:
        text = str(exc)
        problem = next((p for key, p in _DECODE_PROBLEMS if key in text), "the message cannot be parsed")
        raise InvalidArgument(
            f"the request of {method.rsplit('/', 1)[-1]} is not a valid protobuf message: {problem}",
            reason=InvalidArgument.MALFORMED,
        ) from None


def to_status(error: ServiceError) -> grpc.Status:
    """The gRPC status of a domain error, with its rich details (errors.status_proto)."""
    return rpc_status.to_status(status_proto(error))


class ServiceInterceptor(grpc.ServerInterceptor):
    """Observes each unary and server-streaming API call; authenticates the caller, then runs the
    handler with domain errors mapped to statuses. Health and reflection are observed but neither
    admitted nor authenticated; bidirectional streams (server reflection) pass through untouched."""

    def __init__(
        self,
        verifier: TokenVerifier,
        observability: Observability,
        admission: Admission,
        streams: StreamBound,
    ) -> None:
        self._verifier = verifier
        self._observability = observability
        self._admission = admission
        self._streams = streams

    def intercept_service(self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:
            return handler
        method = details.method
        public = method.startswith(INFRASTRUCTURE_PREFIXES)
        if handler.unary_stream is not None and not public:
            return self._server_stream(handler, method)
        if handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        request_deserializer = handler.request_deserializer
        verifier = self._verifier
        observability = self._observability
        admission = self._admission

        def behavior(raw: bytes, context: grpc.ServicerContext) -> Any:
            pairs = context.invocation_metadata()
            metadata = dict(pairs)
            record = RpcRecord(method=method, request_id=request_id(metadata), peer=context.peer())
            context.send_initial_metadata(((REQUEST_ID_HEADER, record.request_id),))
            with observability.rpc(record, metadata):
                try:
                    if public:  # health and reflection: never counted against the bound
                        response = inner(deserialize(request_deserializer, raw, method), context)
                    else:
                        with admission.admit(context.time_remaining(), len(raw)):
                            request = deserialize(request_deserializer, raw, method)
                            caller = verifier.caller(single_authorization(pairs))
                            record.organization = caller.organization
                            token = _CALLER.set(caller)
                            try:
                                response = inner(request, context)
                            finally:
                                _CALLER.reset(token)
                    # A handler may set a code without raising (the health service does for unknown names).
                    record.code = context.code() or grpc.StatusCode.OK  # type: ignore[attr-defined]
                    return response
                except Exception as exc:  # noqa: BLE001 - each kind gets its status in _abort
                    _abort(context, record, method, exc)

        return grpc.unary_unary_rpc_method_handler(
            behavior, request_deserializer=None, response_serializer=_serializer(handler.response_serializer)
        )

    def _server_stream(self, handler: Any, method: str) -> Any:
        """A server-streaming API call (ExportUsageEvents), observed, admitted and authenticated as a
        unary one is, for the whole life of the stream, and also held within the stream bound."""
        inner = handler.unary_stream
        request_deserializer = handler.request_deserializer
        verifier = self._verifier
        observability = self._observability
        admission = self._admission
        streams = self._streams

        def behavior(raw: bytes, context: grpc.ServicerContext) -> Iterator[Any]:
            pairs = context.invocation_metadata()
            metadata = dict(pairs)
            record = RpcRecord(method=method, request_id=request_id(metadata), peer=context.peer())
            context.send_initial_metadata(((REQUEST_ID_HEADER, record.request_id),))
            with observability.rpc(record, metadata):
                try:
                    with admission.admit(context.time_remaining(), len(raw)):
                        request = deserialize(request_deserializer, raw, method)
                        caller = verifier.caller(single_authorization(pairs))
                        record.organization = caller.organization
                        with streams.hold(record.organization):
                            token = _CALLER.set(caller)
                            try:
                                responses = inner(request, context)
                            finally:
                                _CALLER.reset(token)
                            # grpc asks for the next response once the last one is sent.
                            yield from responses
                    record.code = context.code() or grpc.StatusCode.OK  # type: ignore[attr-defined]
                except Exception as exc:  # noqa: BLE001 - each kind gets its status in _abort
                    _abort(context, record, method, exc)

        return grpc.unary_stream_rpc_method_handler(
            behavior, request_deserializer=None, response_serializer=_serializer(handler.response_serializer)
        )


def _abort(context: grpc.ServicerContext, record: RpcRecord, method: str, exc: Exception) -> None:
    """End the call with the status of `exc`: a domain error's own, else INTERNAL (logged)."""
    if isinstance(exc, ServiceError):
        record.code = exc.code
        context.abort_with_status(to_status(exc))
    aborted = context.code()  # type: ignore[attr-defined]
    if aborted not in (None, grpc.StatusCode.OK):
        # The handler set its code, then aborted or raised (a generated base class raises
        # NotImplementedError after UNIMPLEMENTED, as Health/List does): answer that code, without
        # grpc's "Exception calling application" traceback.
        record.code = aborted
        context.abort(aborted, clip(context.details() or aborted.name))  # type: ignore[attr-defined]
    log.exception("unexpected error in %s (request_id %s)", method, record.request_id)
    record.code = grpc.StatusCode.INTERNAL
    context.abort_with_status(to_status(Internal()))


def _serializer(serialize: Callable[[Any], bytes] | None) -> Callable[[Any], bytes] | None:
    """The method's serializer, letting through a response a servicer already serialized (the event
    lists answer with their events' stored bytes: server/wire.py)."""
    if serialize is None:
        return None

    def serialize_or_pass(response: Any) -> bytes:
        return response if type(response) is bytes else serialize(response)

    return serialize_or_pass
