"""The one error table: domain errors, their gRPC code, HTTP status and stable reason.

Logic and storage raise these; only the RPC boundary (rpc/interceptors.py) turns them into a gRPC
status with `google.rpc` rich details (BadRequest field violations, ErrorInfo with the reason).
"""

from __future__ import annotations

import dataclasses
from http import HTTPStatus
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

ERROR_DOMAIN = "usage.v1"
# The longest text an error carries per field violation (a message: twice that), and the most
# violations it lists: messages echo at most a clipped part of the input, and statuses travel in
# trailers that clients cap (8-16 KiB), where a longer one turns into a client-side RESOURCE_EXHAUSTED.
MAX_TEXT = 256
MAX_VIOLATIONS = 20


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """`text`, cut to `limit` characters (ending in `...` when cut)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclasses.dataclass(frozen=True)
class FieldViolation:
    """One invalid field: its path in the request (`end_date`, `events[3].timestamp`) and why."""

    field: str
    description: str


class ServiceError(Exception):
    """Base of all errors a client may see. `message` is safe to show to the caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int = HTTPStatus.INTERNAL_SERVER_ERROR
    reason: str = "INTERNAL"

    def __init__(
        self, message: str, *, violations: tuple[FieldViolation, ...] = (), reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.violations = violations
        if reason is not None:  # a finer reason than the class's, for clients to branch on
            self.reason = reason


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = HTTPStatus.BAD_REQUEST
    reason = "INVALID_ARGUMENT"
    # Finer reasons, where no field can be named:
    MALFORMED = "MALFORMED_REQUEST"  # bytes that are no protobuf message of the request's type
    AMBIGUOUS_CREDENTIALS = "CREDENTIALS_AMBIGUOUS"  # more than one authorization header

    @classmethod
    def of(cls, violations: list[FieldViolation] | tuple[FieldViolation, ...]) -> InvalidArgument:
        """An error naming every violated field; the message names the first."""
        first = violations[0]
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        return cls(f"invalid {first.field}: {first.description}{more}", violations=tuple(violations))

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        return cls.of([FieldViolation(field, description)])


class RequestTooLarge(InvalidArgument):
    """A request over its RPC's size bound (checked before it is parsed), or an HTTP body over the
    gateway's."""

    http_status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    reason = "REQUEST_TOO_LARGE"


class HeadersTooLarge(InvalidArgument):
    """HTTP gateway: headers it would forward as metadata over the limit gRPC puts on metadata."""

    http_status = HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
    reason = "HEADERS_TOO_LARGE"


class UnsupportedMediaType(InvalidArgument):
    """HTTP gateway: a request body that is not declared as JSON."""

    http_status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    reason = "UNSUPPORTED_MEDIA_TYPE"


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND
    http_status = HTTPStatus.NOT_FOUND
    reason = "NOT_FOUND"

    def __init__(self, message: str, *, resource: str = "") -> None:
        super().__init__(message)
        self.resource = resource


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS
    http_status = HTTPStatus.CONFLICT
    reason = "ALREADY_EXISTS"


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = HTTPStatus.BAD_REQUEST
    reason = "FAILED_PRECONDITION"

    def __init__(self, message: str, *, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.metadata = metadata or {}


class Aborted(FailedPrecondition):
    """A write that lost a race with another one (two amends of one event version): retry with
    what is current, which the metadata names."""

    code = grpc.StatusCode.ABORTED
    http_status = HTTPStatus.CONFLICT
    reason = "ABORTED"


class Unauthenticated(ServiceError):
    """No valid token. The reason says which case: a client refreshes on TOKEN_EXPIRED only."""

    code = grpc.StatusCode.UNAUTHENTICATED
    http_status = HTTPStatus.UNAUTHORIZED
    reason = "UNAUTHENTICATED"
    MISSING = "TOKEN_MISSING"  # no authorization header, or not `Bearer <JWT>`
    EXPIRED = "TOKEN_EXPIRED"
    INVALID = "TOKEN_INVALID"  # signature, algorithm, audience, issuer or format
    NO_ORGANIZATION = "TOKEN_ORGANIZATION_INVALID"  # the organization claim is missing or malformed
    NO_CALLER = "TOKEN_CALLER_MISSING"  # a correction with a token that names no caller


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE
    http_status = HTTPStatus.SERVICE_UNAVAILABLE
    reason = "DATABASE_UNAVAILABLE"


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = HTTPStatus.GATEWAY_TIMEOUT
    reason = "DEADLINE_EXCEEDED"


class Cancelled(ServiceError):
    """The client cancelled the call (or hung up): nobody reads the answer, the work stops."""

    code = grpc.StatusCode.CANCELLED
    http_status = 499  # nginx's "client closed request"
    reason = "CANCELLED"


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = HTTPStatus.TOO_MANY_REQUESTS
    reason = "RESOURCE_EXHAUSTED"


class Internal(ServiceError):
    """An unexpected failure: the message is generic, the cause is only logged."""

    def __init__(self) -> None:
        super().__init__("internal error")


# Reasons whose HTTP status is finer than their code's (the gateway reads them from the service's
# ErrorInfo): a request too large is 413, not 400.
HTTP_STATUS_OF_REASON: dict[str, int] = {
    cls.reason: cls.http_status for cls in (RequestTooLarge, HeadersTooLarge, UnsupportedMediaType)
}

# gRPC code -> HTTP status, as grpc-gateway maps them (runtime/errors.go HTTPStatusFromCode);
# 499 is nginx's "client closed request", which http.HTTPStatus does not name.
GRPC_TO_HTTP: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}


def status_proto(error: ServiceError) -> status_pb2.Status:
    """A `google.rpc.Status` of the error: ErrorInfo (its stable reason, the resource of a NotFound,
    what is current for a FailedPrecondition or an Aborted)
    and, for invalid input, BadRequest with the first MAX_VIOLATIONS violations; texts clipped."""
    metadata = {"resource": error.resource} if isinstance(error, NotFound) and error.resource else {}
    if isinstance(error, FailedPrecondition):
        metadata = error.metadata
    details: list[Any] = [
        error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=metadata)
    ]
    if error.violations:
        violations = [
            error_details_pb2.BadRequest.FieldViolation(field=clip(v.field), description=clip(v.description))
            for v in error.violations[:MAX_VIOLATIONS]
        ]
        details.append(error_details_pb2.BadRequest(field_violations=violations))
    packed = []
    for detail in details:
        packed.append(any_pb2.Any())
        packed[-1].Pack(detail)
    code = getattr(code_pb2, error.code.name)
    return status_pb2.Status(code=code, message=clip(error.message, 2 * MAX_TEXT), details=packed)
