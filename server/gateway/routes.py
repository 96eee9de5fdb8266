"""The route table, built from the `google.api.http` annotations of the service descriptors.

A path template such as `/v1/customers/{id}/usage/{aggregator_id}/events` becomes a list of
segments: literals, single-segment variables (`{id}`, `{id=*}`, unnamed `*`) and a trailing
multi-segment variable (`{name=**}`). Matching follows grpc-gateway: among the templates of the
request's HTTP method, the one with literal segments earliest wins, so `/v1/usage-events/aggregate`
beats any `/v1/usage-events/{id}` a future RPC may add. Variable values are percent-decoded per
segment (`%2F` stays inside the value).
"""

from __future__ import annotations

import dataclasses
import enum
import urllib.parse
from collections.abc import Iterable

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor, message_factory
from google.protobuf.message import Message


class Kind(enum.IntEnum):
    """Segment kinds, in matching precedence: a literal beats a variable beats a deep variable."""

    LITERAL = 0
    SINGLE = 1
    DEEP = 2


@dataclasses.dataclass(frozen=True)
class Segment:
    kind: Kind
    text: str = ""  # the literal, for LITERAL
    field: str = ""  # the field path bound (`aggregator.id`), empty for an unnamed `*`


@dataclasses.dataclass(frozen=True)
class Route:
    """One HTTP binding of one RPC."""

    http_method: str  # GET, POST, PUT, PATCH, DELETE
    template: str
    segments: tuple[Segment, ...]
    verb: str  # the `:verb` suffix, usually empty
    body: str  # "", "*" or a top-level field name
    service: descriptor.ServiceDescriptor
    method: descriptor.MethodDescriptor

    @property
    def grpc_path(self) -> str:
        return f"/{self.service.full_name}/{self.method.name}"

    @property
    def input_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.input_type)

    @property
    def output_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.output_type)

    @property
    def path_fields(self) -> tuple[str, ...]:
        return tuple(s.field for s in self.segments if s.field)

    @property
    def precedence(self) -> tuple[int, ...]:
        return tuple(int(s.kind) for s in self.segments)


def parse_template(template: str) -> tuple[tuple[Segment, ...], str]:
    """`/v1/a/{b.c}/d:verb` -> its segments and verb; ValueError for what this gateway cannot route."""
    if not template.startswith("/"):
        raise ValueError(f"path template must start with '/': {template!r}")
    path, verb = template[1:], ""
    last = path.rsplit("/", 1)[-1]
    if ":" in last and "}" not in last.split(":", 1)[1]:
        path, verb = path.rsplit(":", 1)
    segments = tuple(_segment(part, template) for part in _split(path, template))
    if any(s.kind is Kind.DEEP for s in segments[:-1]):
        raise ValueError(f"'**' must be the last segment: {template!r}")
    return segments, verb


def _split(path: str, template: str) -> list[str]:
    """Split on '/' outside braces."""
    parts, depth, current = [], 0, ""
    for ch in path:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "/" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
        if depth not in (0, 1):
            raise ValueError(f"unbalanced braces in {template!r}")
    parts.append(current)
    return parts


def _segment(part: str, template: str) -> Segment:
    if part == "*":
        return Segment(Kind.SINGLE)
    if part == "**":
        return Segment(Kind.DEEP)
    if part.startswith("{") and part.endswith("}"):
        field, _, pattern = part[1:-1].partition("=")
        if pattern in ("", "*"):
            return Segment(Kind.SINGLE, field=field)
        if pattern == "**":
            return Segment(Kind.DEEP, field=field)
        raise ValueError(f"unsupported variable pattern {part!r} in {template!r}")
    if not part or any(c in part for c in "{}*"):
        raise ValueError(f"bad segment {part!r} in {template!r}")
    return Segment(Kind.LITERAL, text=part)


def _bindings(rule: http_pb2.HttpRule) -> Iterable[tuple[str, str, str]]:
    """(HTTP method, template, body) of a rule and its additional bindings."""
    for r in (rule, *rule.additional_bindings):
        kind = r.WhichOneof("pattern")
        if kind is None:
            continue
        if kind == "custom":
            yield r.custom.kind.upper(), r.custom.path, r.body
        else:
            yield kind.upper(), getattr(r, kind), r.body


def build_routes(services: Iterable[descriptor.ServiceDescriptor]) -> list[Route]:
    """Every HTTP binding of every method, in matching order (most literal first)."""
    routes = []
    for service in services:
        for method in service.methods:
            options = method.GetOptions()
            if not options.HasExtension(annotations_pb2.http):
                continue
            if method.client_streaming:
                continue  # HTTP/1 request bodies are not streamed; server streams are (app.py)
            for http_method, template, body in _bindings(options.Extensions[annotations_pb2.http]):
                segments, verb = parse_template(template)
                routes.append(Route(http_method, template, segments, verb, body, service, method))
    return sorted(routes, key=lambda r: r.precedence)


def _match_one(route: Route, parts: list[str], verb: str) -> dict[str, str] | None:
    if verb != route.verb:
        return None
    segs = route.segments
    deep = bool(segs) and segs[-1].kind is Kind.DEEP
    if len(parts) != len(segs) and not (deep and len(parts) >= len(segs)):
        return None
    bound: dict[str, str] = {}
    for i, seg in enumerate(segs):
        if seg.kind is Kind.DEEP:
            value = "/".join(parts[i:])
        else:
            value = parts[i]
            if seg.kind is Kind.LITERAL and value != seg.text:
                return None
        if seg.kind is not Kind.LITERAL and value == "":
            return None
        if seg.field:
            bound[seg.field] = value
    return bound


def match(routes: list[Route], http_method: str, raw_path: str) -> tuple[Route, dict[str, str]] | list[str]:
    """The route and path variables for a request, or the HTTP methods the path allows otherwise."""
    raw_parts = raw_path[1:].split("/") if raw_path.startswith("/") else []
    verb = ""
    if raw_parts and ":" in raw_parts[-1]:
        raw_parts[-1], verb = raw_parts[-1].rsplit(":", 1)
    parts = [urllib.parse.unquote(p) for p in raw_parts]
    allowed: list[str] = []
    for route in routes:
        bound = _match_one(route, parts, urllib.parse.unquote(verb))
        if bound is None and verb:  # a ':' inside the last value of a template without verb
            bound = _match_one(route, [*parts[:-1], urllib.parse.unquote(raw_parts[-1] + ":" + verb)], "")
        if bound is None:
            continue
        if route.http_method == http_method:
            return route, bound
        allowed.append(route.http_method)
    return sorted(set(allowed))
