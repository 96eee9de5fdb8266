"""gRPC statuses as HTTP responses, the way grpc-gateway writes them.

The HTTP status comes from the one table, `server.errors.GRPC_TO_HTTP` (grpc-gateway's
`HTTPStatusFromCode`); the body is `{code, message, details}`, the JSON of a `google.rpc.Status` with
its rich details (ErrorInfo, BadRequest...) rendered from their `Any`s. A 401 carries
`WWW-Authenticate: Bearer`. Only messages the service itself wrote reach the client: a status made by
the gRPC stack (a refused connection, a transport failure) is answered with a generic message.
"""

from __future__ import annotations

import json

import grpc
from google.protobuf import any_pb2, json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from starlette.responses import Response

from server.errors import ERROR_DOMAIN, GRPC_TO_HTTP, HTTP_STATUS_OF_REASON, ServiceError, status_proto

# Imported so the details' Any type URLs resolve in the default descriptor pool.
_DETAIL_TYPES = (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest)

REALM = "usage-service"
JSON = "application/json"

# What the gateway says when the status did not come from the service (no rich details).
GENERIC_MESSAGES: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.CANCELLED: "the call was cancelled",
    grpc.StatusCode.DEADLINE_EXCEEDED: "deadline exceeded",
    grpc.StatusCode.UNAVAILABLE: "the service is unavailable",
    grpc.StatusCode.UNIMPLEMENTED: "not implemented",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "resource exhausted",
}


def http_status(code: grpc.StatusCode) -> int:
    """grpc-gateway's HTTP status for a gRPC code (500 for anything unknown)."""
    return GRPC_TO_HTTP.get(code, 500)


def status_body(code: grpc.StatusCode, message: str, details: list[any_pb2.Any] | None = None) -> bytes:
    """`{"code": N, "message": "...", "details": [...]}` with the details' own fields."""
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=details or [])
    document = json_format.MessageToDict(
        status, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return json.dumps(document, ensure_ascii=False).encode()


def error_response(
    code: grpc.StatusCode,
    message: str,
    details: list[any_pb2.Any] | None = None,
    *,
    had_credentials: bool = False,
    headers: dict[str, str] | None = None,
) -> Response:
    """The HTTP response of a status, with WWW-Authenticate on 401 (RFC 6750)."""
    out = dict(headers or {})
    if code == grpc.StatusCode.UNAUTHENTICATED:
        challenge = f'Bearer realm="{REALM}"'
        out["WWW-Authenticate"] = challenge + (', error="invalid_token"' if had_credentials else "")
    return Response(status_body(code, message, details), http_status(code), out, media_type=JSON)


def service_error_response(error: ServiceError) -> Response:
    """The answer to a request the gateway refuses itself (headers or body too large, a body that is
    not JSON): the error's own HTTP status (413, 415, 431), the body a service error would have."""
    status = status_proto(error)
    body = status_body(error.code, status.message, list(status.details))
    return Response(body, error.http_status, media_type=JSON)


def _rich_status(error: grpc.RpcError) -> tuple[grpc.StatusCode, status_pb2.Status | None]:
    """The code of a failed call and its google.rpc.Status, when the service sent one with details."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except ValueError:  # a status-details trailer that disagrees with the code or message
        status = None
    return code, status if status is not None and status.details else None


def from_rpc_error(error: grpc.RpcError, *, had_credentials: bool) -> Response:
    """The response of a failed call: the service's status and details, or a generic message."""
    code, status = _rich_status(error)
    if status is not None:
        response = error_response(code, status.message, list(status.details), had_credentials=had_credentials)
        response.status_code = HTTP_STATUS_OF_REASON.get(_reason(status), response.status_code)
        return response
    return error_response(code, generic_message(code), had_credentials=had_credentials)


def stream_error_line(error: grpc.RpcError) -> bytes:
    """The last line of a stream that failed after it started, as grpc-gateway writes it:
    `{"error": {"code": N, "message": "...", "details": [...]}}`."""
    code, status = _rich_status(error)
    if status is not None:
        body = status_body(code, status.message, list(status.details))
    else:
        body = status_body(code, generic_message(code))
    return b'{"error":' + body + b"}\n"


def _reason(status: status_pb2.Status) -> str:
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return ""


def generic_message(code: grpc.StatusCode) -> str:
    return GENERIC_MESSAGES.get(code, code.name.lower().replace("_", " "))


def error_info(reason: str, **metadata: str) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata))
    return packed


def bad_request(field: str, description: str) -> list[any_pb2.Any]:
    """ErrorInfo INVALID_ARGUMENT plus a BadRequest naming the offending parameter."""
    violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
    packed = any_pb2.Any()
    packed.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    return [error_info("INVALID_ARGUMENT"), packed]
