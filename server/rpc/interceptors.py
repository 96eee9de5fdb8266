"""Server interceptor: authentication (every RPC but health and reflection), the one mapping of
domain errors to gRPC statuses with rich details, and the observation of each unary RPC (metrics, a
JSON log line, a trace span; see server/observability.py) under a request id that is returned to the
caller as the `x-request-id` response header. Servicers read the caller's organization with
`current_org()` and never set codes themselves.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from server.auth import TokenVerifier
from server.errors import ERROR_DOMAIN, Internal, NotFound, ServiceError
from server.observability import (
    INFRASTRUCTURE_PREFIXES,
    REQUEST_ID_HEADER,
    Observability,
    RpcRecord,
    request_id,
)
from server.rpc.admission import Admission

log = logging.getLogger(__name__)

_ORG: contextvars.ContextVar[str] = contextvars.ContextVar("usage_org")


def current_org() -> str:
    """The organization of the RPC being served (set by the auth interceptor)."""
    return _ORG.get()


# The status travels in trailers, which clients cap (8-16 KiB): long echoes of hostile input or
# thousands of violations would turn INVALID_ARGUMENT into a client-side RESOURCE_EXHAUSTED.
MAX_VIOLATIONS = 20
MAX_TEXT = 256


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def to_status(error: ServiceError) -> grpc.Status:
    """A gRPC status with ErrorInfo (stable reason) and, for invalid input, BadRequest violations
    (the first MAX_VIOLATIONS, texts clipped to MAX_TEXT characters)."""
    details = []
    metadata = {"resource": error.resource} if isinstance(error, NotFound) and error.resource else {}
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=metadata)
    details.append(info)
    if error.violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=_clip(v.field), description=_clip(v.description)
                    )
                    for v in error.violations[:MAX_VIOLATIONS]
                ]
            )
        )
    packed = []
    for d in details:
        a = any_pb2.Any()
        a.Pack(d)
        packed.append(a)
    code = getattr(code_pb2, error.code.name)
    return rpc_status.to_status(
        status_pb2.Status(code=code, message=_clip(error.message, 2 * MAX_TEXT), details=packed)
    )


class ServiceInterceptor(grpc.ServerInterceptor):
    """Observes each unary RPC; authenticates the caller, then runs the handler with domain errors
    mapped to statuses. Streaming RPCs (server reflection) pass through untouched."""

    def __init__(self, verifier: TokenVerifier, observability: Observability, admission: Admission) -> None:
        self._verifier = verifier
        self._observability = observability
        self._admission = admission

    def intercept_service(self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = details.method
        public = method.startswith(INFRASTRUCTURE_PREFIXES)
        inner = handler.unary_unary
        verifier = self._verifier
        observability = self._observability
        admission = self._admission

        def behavior(request: Any, context: grpc.ServicerContext) -> Any:
            metadata = dict(context.invocation_metadata())
            record = RpcRecord(method=method, request_id=request_id(metadata), peer=context.peer())
            context.send_initial_metadata(((REQUEST_ID_HEADER, record.request_id),))
            with observability.rpc(record, metadata):
                try:
                    if public:  # health and reflection: never counted against the bound
                        response = inner(request, context)
                    else:
                        with admission.admit(context.time_remaining()):
                            record.organization = verifier.organization(metadata.get("authorization"))
                            token = _ORG.set(record.organization)
                            try:
                                response = inner(request, context)
                            finally:
                                _ORG.reset(token)
                    # A handler may set a code without raising (the health service does for unknown names).
                    record.code = context.code() or grpc.StatusCode.OK  # type: ignore[attr-defined]
                    return response
                except ServiceError as exc:
                    record.code = exc.code
                    context.abort_with_status(to_status(exc))
                except Exception:
                    aborted = context.code()  # type: ignore[attr-defined]
                    if aborted not in (None, grpc.StatusCode.OK):
                        # The handler set its code, then aborted or raised (a generated base class
                        # raises NotImplementedError after UNIMPLEMENTED, as Health/List does):
                        # answer that code, without grpc's "Exception calling application" traceback.
                        record.code = aborted
                        context.abort(aborted, _clip(context.details() or aborted.name))  # type: ignore[attr-defined]
                    log.exception("unexpected error in %s (request_id %s)", method, record.request_id)
                    record.code = grpc.StatusCode.INTERNAL
                    context.abort_with_status(to_status(Internal()))

        return grpc.unary_unary_rpc_method_handler(
            behavior,
            request_deserializer=handler.request_deserializer,
            response_serializer=_serializer(handler.response_serializer),
        )


def _serializer(serialize: Callable[[Any], bytes] | None) -> Callable[[Any], bytes] | None:
    """The method's serializer, letting through a response a servicer already serialized (the event
    lists answer with their events' stored bytes: server/wire.py)."""
    if serialize is None:
        return None

    def serialize_or_pass(response: Any) -> bytes:
        return response if type(response) is bytes else serialize(response)

    return serialize_or_pass
