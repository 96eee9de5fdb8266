"""The ASGI app: match a route, transcode, call the RPC over a real gRPC channel, answer JSON.

One generic unary caller per route and channel (`channel.unary_unary(path, serializer,
deserializer)`), built at start-up from the descriptors. Calls run on gRPC's own threads; the event
loop awaits their futures, and cancels the call when the HTTP client disconnects first (the
service then stops its work: server/deadline.py).
The `authorization` header and `Grpc-Metadata-*` headers go on as metadata; the deadline is the
`grpc-timeout` header (gRPC's format: `500m`, `10S`, `1M`) or the configured default.

What the gateway refuses itself, before any call: headers that would exceed gRPC's metadata limit
(431), a body over MAX_BODY_BYTES (413), a body that is not declared as JSON (415).
"""

from __future__ import annotations

import asyncio
import email.message
import itertools
import logging
import re
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Any

import grpc
from google.protobuf import descriptor
from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send
from usage.v1 import catalog_service_pb2, corrections_service_pb2, usage_service_pb2

from server.errors import FieldViolation, HeadersTooLarge, RequestTooLarge, ServiceError, UnsupportedMediaType
from server.gateway import docs_page, errors, openapi, routes, transcode
from server.observability import REQUEST_ID_HEADER

log = logging.getLogger(__name__)

SERVICES: tuple[descriptor.ServiceDescriptor, ...] = (
    usage_service_pb2.DESCRIPTOR.services_by_name["UsageService"],
    catalog_service_pb2.DESCRIPTOR.services_by_name["CatalogService"],
    corrections_service_pb2.DESCRIPTOR.services_by_name["CorrectionService"],
)
MAX_BODY_BYTES = 16 * 1024 * 1024
# The media type of a server stream's newline-delimited JSON (grpc-gateway's is application/json).
NDJSON = "application/x-ndjson"
_TIMEOUT = re.compile(r"^([0-9]{1,8})([HMSmun])$")
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
MAX_TIMEOUT_S = 86_400.0
_METADATA_PREFIX = "grpc-metadata-"
_METADATA_KEY = re.compile(r"^[0-9a-z_.-]+$")
# gRPC servers refuse a call whose metadata passes 8 KiB (counted as HTTP/2 counts headers: name +
# value + 32 bytes each), and clients then see RESOURCE_EXHAUSTED, which invites retries. The headers
# the gateway forwards may take this much; the call's own (path, content type, deadline...) fit in
# the rest.
MAX_METADATA_BYTES = 7 * 1024
_HEADER_OVERHEAD = 32
_JSON_TYPE = re.compile(r"^application/([a-z0-9.+-]+\+)?json$")


def parse_timeout(header: str | None, default_s: float) -> float:
    """Seconds from a `grpc-timeout` header value; the default when absent. Capped at a day: gRPC
    allows 99999999 hours, which overflows a deadline into the past."""
    if header is None:
        return default_s
    m = _TIMEOUT.fullmatch(header.strip())
    if not m:
        raise transcode.BadParameter(
            "grpc-timeout", f"{header!r} is not like 500m, 10S or 1M", where="header"
        )
    return min(int(m.group(1)) * _TIMEOUT_UNITS[m.group(2)], MAX_TIMEOUT_S)


def _printable(value: str) -> bool:
    return all(" " <= c <= "~" for c in value)


def forwarded_metadata(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """`authorization`, `x-request-id` and `Grpc-Metadata-<key>` headers as gRPC metadata
    (unsendable ones dropped)."""
    out = []
    for name, value in headers:
        name = name.lower()
        if name in ("authorization", REQUEST_ID_HEADER):
            key = name
        elif name.startswith(_METADATA_PREFIX):
            key = name[len(_METADATA_PREFIX) :]
            if not _METADATA_KEY.fullmatch(key) or key.startswith("grpc-") or key.endswith("-bin"):
                continue
        else:
            continue
        if _printable(value):
            out.append((key, value.strip()))
    sizes = [len(k) + len(v) + _HEADER_OVERHEAD for k, v in out]
    if sum(sizes) > MAX_METADATA_BYTES:
        raise HeadersTooLarge.of([_oversized(out, sizes)])
    return out


def _oversized(metadata: list[tuple[str, str]], sizes: list[int]) -> FieldViolation:
    """The violation of metadata over the bound: its largest header when that one alone takes half the
    bound (a huge token), else all of the forwarded ones (a flood of small ones)."""
    largest = max(range(len(sizes)), key=sizes.__getitem__)
    key = metadata[largest][0]
    if sizes[largest] > MAX_METADATA_BYTES // 2:
        name = key if key in ("authorization", REQUEST_ID_HEADER) else _METADATA_PREFIX + key
    else:
        name = _METADATA_PREFIX + "*"
    return FieldViolation(
        name,
        f"{len(sizes)} headers sent on as gRPC metadata take {sum(sizes)} bytes (name + value + 32 each), "
        f"over the limit of {MAX_METADATA_BYTES}",
    )


def check_content_type(header: str | None) -> None:
    """A request body must be JSON: `application/json` (or `application/<x>+json`), in UTF-8; no
    Content-Type at all is read as JSON too."""
    if header is None:
        return
    parsed = email.message.Message()
    parsed["content-type"] = header
    if not _JSON_TYPE.fullmatch(parsed.get_content_type()) or parsed.get_content_charset("utf-8") not in (
        "utf-8",
        "utf8",
    ):
        raise UnsupportedMediaType.of(
            [FieldViolation("content-type", f"{header[:64]!r} is not JSON: send application/json (UTF-8)")]
        )


def response_headers(call: Any) -> dict[str, str]:
    """The service's response metadata as grpc-gateway sends it (`Grpc-Metadata-<key>`), plus the
    request id as `X-Request-Id`; binary (`-bin`) entries are left out."""
    try:
        metadata = call.initial_metadata() or ()
    except Exception:  # noqa: BLE001 - a call that failed before any metadata has none to give
        return {}
    out = {}
    for key, value in metadata:
        if key.endswith("-bin") or not isinstance(value, str):
            continue
        out[f"Grpc-Metadata-{key}"] = value
        if key == REQUEST_ID_HEADER:
            out["X-Request-Id"] = value
    return out


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused (RequestTooLarge) as soon as it is known to pass `limit` bytes."""
    too_large = RequestTooLarge.of([FieldViolation("body", f"larger than the limit of {limit} bytes")])
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def client_gone(receive: Receive) -> None:
    """Returns once the HTTP client has disconnected (the rest of its body, if any, is dropped)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class UnaryCaller:
    """Calls one RPC over the channel and awaits its result without blocking the event loop."""

    def __init__(self, channel: grpc.Channel, route: routes.Route) -> None:
        self._callable = channel.unary_unary(
            route.grpc_path,
            request_serializer=route.input_class.SerializeToString,
            response_deserializer=route.output_class.FromString,
        )

    async def __call__(
        self, request: Message, metadata: list[tuple[str, str]], timeout: float
    ) -> tuple[Message, Any]:
        """The reply and the finished call (for its metadata); a failure raises its grpc.RpcError."""
        future: Any = self._callable.future(request, metadata=metadata, timeout=timeout)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def _resolve(_: Any) -> None:
            if not done.done():
                done.set_result(None)

        future.add_done_callback(lambda _f: loop.call_soon_threadsafe(_resolve, None))
        try:
            await done
        except asyncio.CancelledError:
            future.cancel()
            raise
        return future.result(), future  # raises the grpc.RpcError of a failure


class StreamCaller:
    """Calls one server-streaming RPC; its messages are read on a worker thread each, so the event
    loop never blocks on the stream."""

    def __init__(self, channel: grpc.Channel, route: routes.Route) -> None:
        self._callable = channel.unary_stream(
            route.grpc_path,
            request_serializer=route.input_class.SerializeToString,
            response_deserializer=route.output_class.FromString,
        )

    def __call__(self, request: Message, metadata: list[tuple[str, str]], timeout: float) -> Any:
        """The call: an iterator of its messages, and its status and metadata."""
        return self._callable(request, metadata=metadata, timeout=timeout)


_END = object()


async def _next_message(call: Any) -> Any:
    """The stream's next message, _END after the last; a failure raises its grpc.RpcError."""
    return await asyncio.to_thread(next, call, _END)


async def stream_response(call: Any, has_auth: bool) -> Response:
    """A server stream as newline-delimited JSON, one `{"result": ...}` line per message, as
    grpc-gateway writes it. A failure before the first message is an ordinary error response (its
    HTTP status tells it); one after it is a last `{"error": ...}` line, the status being sent.
    The HTTP client going away cancels the call, and with it the service's work."""
    try:
        first = await _next_message(call)
    except grpc.RpcError as err:
        response = errors.from_rpc_error(err, had_credentials=has_auth)
        response.headers.update(response_headers(err))
        return response
    except asyncio.CancelledError:
        call.cancel()
        raise

    async def lines() -> Any:
        message = first
        try:
            while message is not _END:
                yield b'{"result":' + transcode.to_json(message).encode() + b"}\n"
                message = await _next_message(call)
        except grpc.RpcError as err:
            yield errors.stream_error_line(err)
        finally:
            call.cancel()  # after the last message: nothing; the client gone: stops the service's work

    return StreamingResponse(lines(), 200, response_headers(call), media_type=NDJSON)


class Gateway:
    """The request handler: one instance per app, holding the routes and their callers.

    With several channels (each its own HTTP/2 connection), calls take them in turn: behind
    `serve --workers N` the kernel spreads connections, not calls, over the worker processes, so
    one connection would leave every HTTP call to a single worker.
    """

    def __init__(
        self, channels: Sequence[grpc.Channel], route_table: list[routes.Route], default_timeout_s: float
    ):
        self.routes = route_table
        self.default_timeout_s = default_timeout_s
        self._callers = [
            {
                r.grpc_path: (StreamCaller if r.method.server_streaming else UnaryCaller)(ch, r)
                for r in route_table
            }
            for ch in channels
        ]
        self._turn = itertools.cycle(self._callers)

    async def handle(self, request: Request) -> Response:
        try:
            return await self._handle(request)
        except Exception:  # a bug of the gateway: log it, never send its text
            log.exception("gateway failure on %s %s", request.method, request.url.path)
            return errors.error_response(grpc.StatusCode.INTERNAL, "internal error")

    async def _handle(self, request: Request) -> Response:
        raw = request.scope.get("raw_path") or urllib.parse.quote(request.scope["path"]).encode()
        found = routes.match(self.routes, request.method, raw.decode("latin-1"))
        if isinstance(found, list):
            return _no_route(found)
        route, bound = found
        has_auth = "authorization" in request.headers
        try:
            metadata = forwarded_metadata(request.headers.items())
            timeout = parse_timeout(request.headers.get("grpc-timeout"), self.default_timeout_s)
            body = b""
            if route.body:
                check_content_type(request.headers.get("content-type"))
                body = await read_body(request)
            message = transcode.build_request(route, bound, request.query_params.multi_items(), body)
        except transcode.BadParameter as exc:
            details = errors.bad_request(exc.parameter, exc.problem)
            return errors.error_response(grpc.StatusCode.INVALID_ARGUMENT, str(exc), details)
        except ServiceError as exc:
            return errors.service_error_response(exc)
        caller = next(self._turn)[route.grpc_path]
        if isinstance(caller, StreamCaller):
            return await stream_response(caller(message, metadata, timeout), has_auth)
        call = asyncio.ensure_future(caller(message, metadata, timeout))
        gone = asyncio.ensure_future(client_gone(request.receive))
        try:
            await asyncio.wait((call, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not call.done():  # the client left first: stop the call (and the service's work)
                call.cancel()
        if call.cancelled():
            return errors.error_response(grpc.StatusCode.CANCELLED, "the client closed the request")
        try:
            reply, finished = call.result()
        except grpc.RpcError as err:
            response = errors.from_rpc_error(err, had_credentials=has_auth)
            response.headers.update(response_headers(err))
            return response
        return Response(transcode.to_json(reply), 200, response_headers(finished), media_type=errors.JSON)


def _no_route(allowed: list[str]) -> Response:
    # grpc-gateway answers a known path with another method 501 (code UNIMPLEMENTED); HTTP's own
    # answer, 405 with `Allow`, tells the caller more and is what README documents.
    if allowed:
        headers = {"Allow": ", ".join(allowed)}
        body = errors.status_body(grpc.StatusCode.UNIMPLEMENTED, "Method Not Allowed")
        return Response(body, 405, headers, media_type=errors.JSON)
    return errors.error_response(grpc.StatusCode.NOT_FOUND, "Not Found")


class GatewayApp:
    """The ASGI app: `/openapi.json`, the `/docs` page that renders it, and every other path through
    the gateway's own routing.

    Starlette's router is not used: its path patterns do not match every decoded path (a `%0A`
    inside a variable), and routing must be grpc-gateway's, from the annotations.
    """

    def __init__(self, gateway: Gateway, document: dict[str, Any]) -> None:
        self.gateway = gateway
        self.document = document
        self.docs = docs_page.DocsPage(
            not_found=errors.error_response(grpc.StatusCode.NOT_FOUND, "Not Found")
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan and websockets: nothing to do
            return
        if scope.get("raw_path", b"").startswith((b"http://", b"https://")):
            scope = _origin_form(scope)
        request = Request(scope, receive)
        if docs_page.handles(scope["path"]):
            if request.method in ("GET", "HEAD"):
                await self.docs(scope, receive, send)
                return
            response: Response = _no_route(["GET", "HEAD"])
        elif scope["path"] == "/openapi.json" and request.method == "GET":
            response = JSONResponse(self.document)
        else:
            response = await self.gateway.handle(request)
        await response(scope, receive, send)


def _origin_form(scope: Scope) -> Scope:
    """A request target in absolute form (`GET http://host/v1/...`, as proxies send) routed by its path."""
    path = urllib.parse.urlsplit(scope["raw_path"].decode("latin-1")).path or "/"
    return {**scope, "raw_path": path.encode("latin-1"), "path": urllib.parse.unquote(path)}


def create_app(
    channels: Sequence[grpc.Channel],
    *,
    default_timeout_s: float = 30.0,
    services: tuple[descriptor.ServiceDescriptor, ...] = SERVICES,
) -> GatewayApp:
    """The gateway app for `services`, calling them over `channels` in turn; `/openapi.json` describes it."""
    route_table = routes.build_routes(services)
    return GatewayApp(Gateway(channels, route_table, default_timeout_s), openapi.build_document(route_table))
