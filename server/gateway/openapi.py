"""The OpenAPI 3 document of the gateway, derived from the same routes and descriptors it serves.

Each route is an operation: its path variables are path parameters, the fields neither bound by the
path nor by the body are query parameters (nested message fields as `a.b`, repeated fields as
exploded arrays), the body field (or the whole message) is the request body. Schemas are the proto3
JSON mapping in proto field names, as the gateway emits them, tightened by the fields' protovalidate
rules (lengths, patterns, `in` lists, integer bounds, item counts, required) so that what the document
allows is what the service accepts. Every operation answers 200 with its response message or a
`google.rpc.Status` error body.

The words come from the protos' doc comments (server/contract.py): a method's comment is its
operation's summary (first sentence) and description, a message's its schema's, a field's its
property's and query or path parameter's, a service's its tag's. `servers` names the gateway that
serves the document (a relative URL, right behind any proxy); /docs renders it (docs_page.py).
"""

from __future__ import annotations

from typing import Any

from buf.validate import validate_pb2
from google.protobuf import descriptor

from server import contract
from server.gateway.routes import Route
from server.gateway.transcode import SCALAR_MESSAGES

FD = descriptor.FieldDescriptor
# Descriptors typed loosely: the stubs make message_type/enum_type optional and the upb classes
# differ from the pure-Python ones, which only adds casts to code that checks the type first.
Field = Any
MessageType = Any
STATUS_SCHEMA = "google.rpc.Status"
_INT32 = {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
_UINT32 = {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**32 - 1}
_SCALARS: dict[int, dict[str, Any]] = {
    FD.TYPE_STRING: {"type": "string"},
    FD.TYPE_BYTES: {"type": "string", "format": "byte"},
    FD.TYPE_BOOL: {"type": "boolean"},
    FD.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FD.TYPE_FLOAT: {"type": "number", "format": "float"},
    FD.TYPE_INT32: _INT32,
    FD.TYPE_SINT32: _INT32,
    FD.TYPE_SFIXED32: _INT32,
    FD.TYPE_UINT32: _UINT32,
    FD.TYPE_FIXED32: _UINT32,
    # proto3 JSON writes 64-bit integers as strings
    FD.TYPE_INT64: {"type": "string", "format": "int64"},
    FD.TYPE_SINT64: {"type": "string", "format": "int64"},
    FD.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    FD.TYPE_UINT64: {"type": "string", "format": "uint64"},
    FD.TYPE_FIXED64: {"type": "string", "format": "uint64"},
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "example": "1.5s"},
    "google.protobuf.FieldMask": {"type": "string", "description": "comma-separated field paths"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
}


DESCRIPTION = """\
The HTTP/JSON form of the usage.v1 gRPC services: each operation is one RPC, routed by its
`google.api.http` annotation and transcoded as grpc-gateway does (path variables, query parameters,
JSON body; proto field names in the JSON).

Every call acts for the organization of its bearer token: `Authorization: Bearer <JWT>`
(`usage-service token --org ORG` mints one). Errors are a `google.rpc.Status` body with the HTTP
status of its gRPC code (400 invalid input, naming every field; 401; 404; 409; 429; 503; 504).
"""

TIMEOUT_PARAMETER = {
    "name": "grpc-timeout",
    "in": "header",
    "required": False,
    "description": "The call's deadline in gRPC's format (`500m`, `10S`, `1M`); default 30 s. "
    "Past it: 504 DEADLINE_EXCEEDED.",
    "schema": {"type": "string", "pattern": "^[0-9]{1,8}[HMSmun]$"},
}


def _comment(element: Any) -> str:
    """The doc comment of a service, method, message or field of the contract ("" for others)."""
    return contract.comments().get(element.full_name, "")


def _described(schema: dict[str, Any], text: str) -> dict[str, Any]:
    """`schema` with a description; a `$ref` is wrapped, since OpenAPI 3.0 ignores its siblings."""
    if not text:
        return schema
    if "$ref" in schema:
        return {"allOf": [schema], "description": text}
    return {**schema, "description": text}


def summary(comment: str) -> str:
    """The first sentence of a comment, on one line, without its period."""
    sentence = " ".join(comment.split()).split(". ", 1)[0]
    return sentence.removesuffix(".")


def _rules(field: Field) -> validate_pb2.FieldRules:
    return field.GetOptions().Extensions[validate_pb2.field]


def _string_rules(rules: validate_pb2.StringRules) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if rules.HasField("min_len"):
        out["minLength"] = rules.min_len
    if rules.HasField("max_len"):
        out["maxLength"] = rules.max_len
    if rules.HasField("pattern"):
        out["pattern"] = rules.pattern
    if getattr(rules, "in"):
        out["enum"] = list(getattr(rules, "in"))
    return out


def _int_rules(rules: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, key, shift in (("gte", "minimum", 0), ("gt", "minimum", 1), ("lte", "maximum", 0)):
        if rules.HasField(name):
            out[key] = getattr(rules, name) + shift
    if rules.HasField("lt"):
        out["maximum"] = rules.lt - 1
    return out


def _apply_rules(schema: dict[str, Any], rules: validate_pb2.FieldRules) -> dict[str, Any]:
    kind = rules.WhichOneof("type")
    if kind == "string":
        return {**schema, **_string_rules(rules.string)}
    if kind in ("int32", "uint32", "sint32", "sfixed32", "fixed32"):
        return {**schema, **_int_rules(getattr(rules, kind))}
    return schema


class SchemaBuilder:
    """Component schemas of messages, collected as fields refer to them."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {STATUS_SCHEMA: _status_schema()}

    def single(self, field: Field, rules: validate_pb2.FieldRules | None = None) -> dict[str, Any]:
        """The schema of one value of a field (an item, for a repeated field)."""
        if field.type == FD.TYPE_MESSAGE:
            return self.message_ref(field.message_type)
        if field.type == FD.TYPE_ENUM:
            return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        schema = dict(_SCALARS[field.type])
        return _apply_rules(schema, rules) if rules is not None else schema

    def field(self, field: Field) -> dict[str, Any]:
        rules = _rules(field)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self.single(value)}
        if not field.is_repeated:
            return self.single(field, rules)
        item_rules = rules.repeated.items if rules.WhichOneof("type") == "repeated" else None
        schema: dict[str, Any] = {"type": "array", "items": self.single(field, item_rules)}
        if rules.WhichOneof("type") == "repeated":
            if rules.repeated.HasField("min_items"):
                schema["minItems"] = rules.repeated.min_items
            if rules.repeated.HasField("max_items"):
                schema["maxItems"] = rules.repeated.max_items
        return schema

    def message_ref(self, message: MessageType) -> dict[str, Any]:
        name = message.full_name
        if name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[name])
        if name in SCALAR_MESSAGES:  # wrappers: their value's JSON form
            return self.single(message.fields_by_name["value"])
        if name not in self.components:
            self.components[name] = {}  # placeholder: recursion stops here
            self.components[name] = self.message_schema(message)
        return {"$ref": f"#/components/schemas/{name}"}

    def message_schema(
        self, message: MessageType, exclude: tuple[str, ...] = (), partial: bool = False
    ) -> dict[str, Any]:
        """An inline schema of `message` without the fields in `exclude`; `partial`: none required."""
        fields = [f for f in message.fields if f.name not in exclude]
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {f.name: _described(self.field(f), _comment(f)) for f in fields},
        }
        if text := _comment(message):
            schema["description"] = text
        required = [] if partial else [f.name for f in fields if is_required(f)]
        if required:
            schema["required"] = required
        return schema


def is_required(field: Field) -> bool:
    """Whether the service rejects a request that leaves the field out."""
    rules = _rules(field)
    if rules.required:
        return True
    if field.has_presence:
        return False
    kind = rules.WhichOneof("type")
    if kind == "string":  # an empty string breaks min_len, or an `in` list that lacks it
        allowed = list(getattr(rules.string, "in"))
        return rules.string.min_len > 0 or (bool(allowed) and "" not in allowed)
    if kind == "repeated":
        return rules.repeated.min_items > 0
    return False


def _status_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A google.rpc.Status: the gRPC code, a message, and rich details.",
        "properties": {
            "code": {
                **_INT32,
                "description": "The gRPC status code: 3 INVALID_ARGUMENT, 5 NOT_FOUND, 16 UNAUTHENTICATED...",
            },
            "message": {"type": "string", "description": "What went wrong, in words; safe to show."},
            "details": {
                "type": "array",
                "items": _WELL_KNOWN["google.protobuf.Any"],
                "description": "google.rpc.ErrorInfo (domain usage.v1 and a stable reason) and, for "
                "invalid input, google.rpc.BadRequest naming every violated field.",
            },
        },
        "required": ["code", "message", "details"],
    }


def _query_parameters(
    builder: SchemaBuilder, message: MessageType, bound: set[str], prefix: str = "", depth: int = 0
) -> list[dict[str, Any]]:
    """The query parameters of a request message: every field the path and body leave free."""
    out: list[dict[str, Any]] = []
    for field in message.fields:
        path = prefix + field.name
        if path in bound:
            continue
        nested = field.type == FD.TYPE_MESSAGE and field.message_type.full_name not in SCALAR_MESSAGES
        if nested:
            if field.is_repeated or field.message_type.full_name.startswith("google.protobuf.") or depth >= 3:
                continue  # maps, repeated messages, Struct/Value: not expressible in a query string
            out += _query_parameters(builder, field.message_type, bound, path + ".", depth + 1)
            continue
        parameter: dict[str, Any] = {"name": path, "in": "query", "schema": builder.field(field)}
        if text := _comment(field):
            parameter["description"] = text
        if field.is_repeated:
            parameter.update(style="form", explode=True)
        if is_required(field) and not prefix:
            parameter["required"] = True
        out.append(parameter)
    return out


def parameter_names(route: Route) -> dict[str, str]:
    """OpenAPI names of the path variables: `aggregator.id` -> `id` when that names nothing else.

    Dotted names are valid OpenAPI but break tools that fill templates with str.format, and
    `/v1/aggregators/{id}` must be one path for GET, PATCH and DELETE.
    """
    top_level = {f.name for f in route.method.input_type.fields}
    paths = route.path_fields
    names = {}
    for path in paths:
        short = path.rsplit(".", 1)[-1]
        unique = sum(p.rsplit(".", 1)[-1] == short for p in paths) == 1
        names[path] = (
            short if unique and (short == path or short not in top_level) else path.replace(".", "_")
        )
    return names


def _path_parameter(builder: SchemaBuilder, route: Route, path: str, name: str) -> dict[str, Any]:
    message: MessageType = route.method.input_type
    *parents, last = path.split(".")
    for part in parents:
        message = message.fields_by_name[part].message_type
    field = message.fields_by_name[last]
    schema = builder.single(field, _rules(field))
    schema.setdefault("minLength", 1)  # an empty segment never matches a template variable
    text = _comment(field) or f"Sets `{path}`."
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": text}


def _request_body(builder: SchemaBuilder, route: Route) -> dict[str, Any] | None:
    """The body schema, without the fields the path sets (they come from the URL, and win), and with
    nothing required in a PATCH (it updates the fields it names: transcode.fill_update_mask)."""
    if not route.body:
        return None
    message = route.method.input_type
    if route.body == "*":
        bound = tuple(p for p in route.path_fields if "." not in p)
        schema = builder.message_schema(message, exclude=bound) if bound else builder.message_ref(message)
    else:
        field = message.fields_by_name[route.body]
        prefix = route.body + "."
        bound = tuple(
            p[len(prefix) :]
            for p in route.path_fields
            if p.startswith(prefix) and "." not in p[len(prefix) :]
        )
        partial = route.http_method == "PATCH" and "update_mask" in message.fields_by_name
        if field.type == FD.TYPE_MESSAGE and (bound or partial) and not field.is_repeated:
            schema = builder.message_schema(field.message_type, exclude=bound, partial=partial)
        else:
            schema = builder.field(field)
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def openapi_path(route: Route) -> str:
    """`/v1/aggregators/{aggregator.id}` as OpenAPI writes it: `/v1/aggregators/{id}`."""
    names = parameter_names(route)
    parts = []
    for seg in route.segments:
        parts.append(seg.text if not seg.field else "{" + names[seg.field] + "}")
    return "/" + "/".join(parts) + (":" + route.verb if route.verb else "")


def _ok(builder: SchemaBuilder, route: Route) -> dict[str, Any]:
    """A unary answer is the response message; a server stream is newline-delimited JSON, one
    `{"result": <message>}` per line, and an `{"error": <status>}` line if it fails once started."""
    message = builder.message_ref(route.method.output_type)
    if not route.method.server_streaming:
        return {"description": "OK", "content": {"application/json": {"schema": message}}}
    line = {
        "type": "object",
        "description": "One line of the stream: a message, or the error that ended the stream",
        "properties": {"result": message, "error": {"$ref": f"#/components/schemas/{STATUS_SCHEMA}"}},
    }
    return {
        "description": "A stream: newline-delimited JSON, one object per line",
        "content": {"application/x-ndjson": {"schema": line}},
    }


def operation(builder: SchemaBuilder, route: Route) -> dict[str, Any]:
    bound = set(route.path_fields)
    if route.body and route.body != "*":
        bound.add(route.body)
    names = parameter_names(route)
    parameters = [_path_parameter(builder, route, p, names[p]) for p in route.path_fields]
    if route.body != "*":
        parameters += _query_parameters(builder, route.method.input_type, bound)
    parameters.append(TIMEOUT_PARAMETER)
    comment = _comment(route.method)
    op: dict[str, Any] = {
        "operationId": f"{route.service.name}_{route.method.name}",
        "tags": [route.service.name],
        "summary": summary(comment) or route.method.name,
        "description": f"{comment}\n\ngRPC: `{route.grpc_path[1:]}`".lstrip(),
        "parameters": parameters,
        "responses": {
            "200": _ok(builder, route),
            "default": {
                "description": "An error: the gRPC status, its HTTP status from grpc-gateway's table",
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{STATUS_SCHEMA}"}}
                },
            },
        },
    }
    body = _request_body(builder, route)
    if body is not None:
        op["requestBody"] = body
    return op


def build_document(routes: list[Route], title: str = "usage-service", version: str = "v1") -> dict[str, Any]:
    """The OpenAPI 3.0 document of `routes` (as served at /openapi.json)."""
    builder = SchemaBuilder()
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if any(not s.field and s.kind != 0 for s in route.segments):
            continue  # unnamed wildcards have no OpenAPI spelling
        paths.setdefault(openapi_path(route), {})[route.http_method.lower()] = operation(builder, route)
    services = {route.service.full_name: route.service for route in routes}
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": version, "description": DESCRIPTION},
        "servers": [{"url": "/", "description": "the gateway that serves this document"}],
        "tags": [{"name": s.name, "description": _comment(s)} for s in services.values()],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(builder.components.items())),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": [{"bearerAuth": []}],
    }
