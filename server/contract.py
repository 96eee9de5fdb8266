"""The usage.v1 contract with its doc comments, as data.

The generated `_pb2` modules embed the contract's files without source info, and Python's
descriptors have no way to give an element's comment. scripts/gen_protos.py therefore also writes
`generated/usage/v1/descriptor_set.binpb`: the FileDescriptorSet of protos/usage/v1 with source
info, drift-checked in CI like the stubs. From it:

- `documented_files()`: each contract file's FileDescriptorProto with its comments, by file name
  (server reflection serves these: server/rpc/reflection.py);
- `comments()`: the leading comment of each service, method, message, field, enum and enum value
  by full name (`usage.v1.ListUsageEventsRequest.limit`), for the OpenAPI document.

Both are read once, on first use; nothing is read at import.
"""

from __future__ import annotations

import functools
import pathlib
from collections.abc import Iterable, Iterator

from google.protobuf import descriptor_pb2
from usage.v1 import usage_service_pb2

DESCRIPTOR_SET = "descriptor_set.binpb"
# Field numbers of FileDescriptorProto / DescriptorProto / ServiceDescriptorProto / EnumDescriptorProto
# in SourceCodeInfo.Location paths (google/protobuf/descriptor.proto).
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM = 2, 3, 4
_SERVICE_METHOD = 2
_ENUM_VALUE = 2


@functools.cache
def documented_files() -> dict[str, descriptor_pb2.FileDescriptorProto]:
    """The contract's files with source info, by name (`usage/v1/usage_service.proto`)."""
    # Beside the generated modules (importlib.resources cannot open the namespace package usage.v1
    # of an editable install on Python 3.11).
    data = (pathlib.Path(usage_service_pb2.__file__).parent / DESCRIPTOR_SET).read_bytes()
    files = descriptor_pb2.FileDescriptorSet.FromString(data).file
    for file in files:
        for message in _messages(file.message_type):
            for field in message.field:
                # protoc writes each field's default json_name into a descriptor set, the generated
                # modules leave it out; a client seeing it set (grpcurl does) prints lowerCamelCase
                # JSON instead of the proto names. Reflection must describe the very same files.
                field.ClearField("json_name")
    return {f.name: f for f in files}


def _messages(messages: Iterable[descriptor_pb2.DescriptorProto]) -> Iterator[descriptor_pb2.DescriptorProto]:
    for message in messages:
        yield message
        yield from _messages(message.nested_type)


def clean(comment: str) -> str:
    """A proto comment as text: the one space after `//` dropped, line breaks kept, ends trimmed."""
    lines = [line[1:] if line.startswith(" ") else line for line in comment.splitlines()]
    return "\n".join(lines).strip()


def _elements(
    file: descriptor_pb2.FileDescriptorProto,
) -> Iterator[tuple[tuple[int, ...], str]]:
    """(source path, full name) of every documented element of a file."""
    prefix = f"{file.package}." if file.package else ""

    def message(path: tuple[int, ...], m: descriptor_pb2.DescriptorProto, scope: str) -> Iterator:
        name = scope + m.name
        yield path, name
        for i, f in enumerate(m.field):
            yield (*path, _MESSAGE_FIELD, i), f"{name}.{f.name}"
        for i, nested in enumerate(m.nested_type):
            yield from message((*path, _MESSAGE_NESTED, i), nested, name + ".")
        for i, e in enumerate(m.enum_type):
            yield from enum((*path, _MESSAGE_ENUM, i), e, name + ".")

    def enum(path: tuple[int, ...], e: descriptor_pb2.EnumDescriptorProto, scope: str) -> Iterator:
        yield path, scope + e.name
        for i, v in enumerate(e.value):
            # Enum values are scoped beside their enum, as in C++.
            yield (*path, _ENUM_VALUE, i), scope + v.name

    for i, m in enumerate(file.message_type):
        yield from message((_FILE_MESSAGE, i), m, prefix)
    for i, e in enumerate(file.enum_type):
        yield from enum((_FILE_ENUM, i), e, prefix)
    for i, s in enumerate(file.service):
        yield (_FILE_SERVICE, i), prefix + s.name
        for j, method in enumerate(s.method):
            yield (_FILE_SERVICE, i, _SERVICE_METHOD, j), f"{prefix}{s.name}.{method.name}"


@functools.cache
def comments() -> dict[str, str]:
    """The leading comment of every documented element of the contract, by full name."""
    found: dict[str, str] = {}
    for file in documented_files().values():
        by_path = {tuple(loc.path): loc.leading_comments for loc in file.source_code_info.location}
        for path, name in _elements(file):
            text = clean(by_path.get(path, ""))
            if text:
                found[name] = text
    return found
