"""Server reflection that describes the contract with its doc comments.

grpcio-reflection answers from a descriptor pool, and a pool's `FileDescriptor.CopyToProto` drops
source info: `grpcurl describe usage.v1.ListUsageEventsRequest` would print bare fields. The pool
given to it here is the default one (every generated file: the contract, its imports, health and
reflection), except that each file of the contract is copied out from `server.contract`'s descriptor
set, which keeps the comment of every service, method, message and field. Methods are found by
name too (`describe usage.v1.UsageService.ListUsageEvents`), which the default pool cannot do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection

from server import contract


class _File:
    """A file descriptor as grpc_reflection reads it (name, dependencies, CopyToProto), with the
    documented copy of the file when there is one."""

    def __init__(self, file: Any, documented: Mapping[str, descriptor_pb2.FileDescriptorProto]) -> None:
        self._file = file
        self._documented = documented
        self.name: str = file.name

    @property
    def dependencies(self) -> list[_File]:
        return [_File(d, self._documented) for d in self._file.dependencies]

    def CopyToProto(self, proto: descriptor_pb2.FileDescriptorProto) -> None:  # noqa: N802 (protobuf's name)
        documented = self._documented.get(self.name)
        if documented is not None:
            proto.CopyFrom(documented)
        else:
            self._file.CopyToProto(proto)


class DocumentedPool:
    """The lookups grpc_reflection makes, on `pool`, with the contract's files documented."""

    def __init__(
        self, pool: Any, documented: Mapping[str, descriptor_pb2.FileDescriptorProto] | None = None
    ) -> None:
        self._pool = pool
        self._documented = contract.documented_files() if documented is None else documented

    def FindFileByName(self, name: str) -> _File:  # noqa: N802
        return _File(self._pool.FindFileByName(name), self._documented)

    def FindFileContainingSymbol(self, symbol: str) -> _File:  # noqa: N802
        try:
            file = self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            # The upb pool finds services, messages, fields and enums by name, but not methods:
            # `grpcurl describe usage.v1.UsageService.ListUsageEvents` asks for one.
            file = self._pool.FindMethodByName(symbol).containing_service.file
        return _File(file, self._documented)

    def FindMessageTypeByName(self, name: str) -> Any:  # noqa: N802
        return self._pool.FindMessageTypeByName(name)

    def FindExtensionByNumber(self, message: Any, number: int) -> Any:  # noqa: N802
        return self._pool.FindExtensionByNumber(message, number)

    def FindAllExtensions(self, message: Any) -> Any:  # noqa: N802
        return self._pool.FindAllExtensions(message)


def enable(service_names: Iterable[str], server: grpc.Server) -> None:
    """Add server reflection for `service_names`, answering with the contract's comments."""
    reflection.enable_server_reflection(
        tuple(service_names), server, pool=DocumentedPool(descriptor_pool.Default())
    )
