"""The one error table: domain errors, their gRPC code, HTTP status and stable reason.

Logic and storage raise these; only the RPC boundary (rpc/interceptors.py) turns them into a gRPC
status with `google.rpc` rich details (BadRequest field violations, ErrorInfo with the reason).
"""

from __future__ import annotations

import dataclasses
from http import HTTPStatus

import grpc

ERROR_DOMAIN = "usage.v1"


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

    @classmethod
    def of(cls, violations: list[FieldViolation] | tuple[FieldViolation, ...]) -> InvalidArgument:
        """An error naming every violated field; the message names the first."""
        first = violations[0]
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        return cls(f"invalid {first.field}: {first.description}{more}", violations=tuple(violations))

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        return cls.of([FieldViolation(field, description)])


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


class Unauthenticated(ServiceError):
    """No valid token. The reason says which case: a client refreshes on TOKEN_EXPIRED only."""

    code = grpc.StatusCode.UNAUTHENTICATED
    http_status = HTTPStatus.UNAUTHORIZED
    reason = "UNAUTHENTICATED"
    MISSING = "TOKEN_MISSING"  # no authorization header, or not `Bearer <JWT>`
    EXPIRED = "TOKEN_EXPIRED"
    INVALID = "TOKEN_INVALID"  # signature, algorithm, audience, issuer or format
    NO_ORGANIZATION = "TOKEN_ORGANIZATION_INVALID"  # the organization claim is missing or malformed


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
