"""Vendor the third-party .proto sources into third_party/protos from installed wheels.

- google/api and google/rpc: copied verbatim from googleapis-common-protos, which ships the sources.
- buf/validate/validate.proto: protovalidate 2.x ships it only as a serialized FileDescriptorProto
  inside its generated module, so the source is rebuilt from that descriptor here. The rebuild is
  checked: `--check` recompiles the printed source and compares the descriptor with the shipped one.

Run: python scripts/vendor_protos.py [--check]
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import importlib.util
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

from google.protobuf import (  # noqa: F401 (the well-known types register themselves in the pool)
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    field_mask_pb2,
    message_factory,
    text_format,
    timestamp_pb2,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEST = ROOT / "third_party" / "protos"
GOOGLE_FILES = [
    "google/api/annotations.proto",
    "google/api/http.proto",
    "google/api/field_behavior.proto",
    "google/rpc/status.proto",
    "google/rpc/code.proto",
    "google/rpc/error_details.proto",
]
VALIDATE = "buf/validate/validate.proto"

_SCALARS = {
    descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE: "double",
    descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT: "float",
    descriptor_pb2.FieldDescriptorProto.TYPE_INT64: "int64",
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT64: "uint64",
    descriptor_pb2.FieldDescriptorProto.TYPE_INT32: "int32",
    descriptor_pb2.FieldDescriptorProto.TYPE_FIXED64: "fixed64",
    descriptor_pb2.FieldDescriptorProto.TYPE_FIXED32: "fixed32",
    descriptor_pb2.FieldDescriptorProto.TYPE_BOOL: "bool",
    descriptor_pb2.FieldDescriptorProto.TYPE_STRING: "string",
    descriptor_pb2.FieldDescriptorProto.TYPE_BYTES: "bytes",
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT32: "uint32",
    descriptor_pb2.FieldDescriptorProto.TYPE_SFIXED32: "sfixed32",
    descriptor_pb2.FieldDescriptorProto.TYPE_SFIXED64: "sfixed64",
    descriptor_pb2.FieldDescriptorProto.TYPE_SINT32: "sint32",
    descriptor_pb2.FieldDescriptorProto.TYPE_SINT64: "sint64",
}
_LABELS = {1: "optional", 2: "required", 3: "repeated"}
_MAX_FIELD = 536870912  # exclusive end of "to max" ranges


def _wheel_file(distribution: str, rel: str) -> pathlib.Path:
    """A file that an installed distribution ships, by its path inside site-packages."""
    for entry in importlib.metadata.files(distribution) or []:
        if str(entry) == rel:
            return pathlib.Path(str(entry.locate()))
    raise FileNotFoundError(f"{distribution} does not ship {rel}")


def shipped_validate_descriptor() -> bytes:
    """The serialized buf/validate/validate.proto descriptor embedded in protovalidate."""
    spec = importlib.util.find_spec("protovalidate")
    assert spec is not None and spec.origin
    src = (pathlib.Path(spec.origin).parent / "_gen/buf/validate/validate_pb.py").read_text()
    start = src.index("_DESC = file_desc(") + len("_DESC = file_desc(")
    end = src.index("\n    [\n", start)
    return ast.literal_eval(src[start:end].strip().rstrip(","))


class _Printer:
    """Prints a FileDescriptorProto as .proto source, custom options decoded through a pool."""

    def __init__(self, fd: descriptor_pb2.FileDescriptorProto) -> None:
        self.fd = fd
        self.pool = descriptor_pool.DescriptorPool()
        for dep in fd.dependency:
            dep_fd = descriptor_pb2.FileDescriptorProto()
            descriptor_pool.Default().FindFileByName(dep).CopyToProto(dep_fd)
            self.pool.Add(dep_fd)
        self.pool.Add(fd)
        self.classes = message_factory.GetMessageClassesForFiles([*fd.dependency, fd.name], self.pool)
        self.out: list[str] = []

    def _options(self, opts: object, kind: str) -> list[str]:
        """Render options as `name = value` strings, extensions as `(full.name) = {...}`."""
        cls = self.classes[f"google.protobuf.{kind}"]
        dyn = cls.FromString(opts.SerializeToString())  # type: ignore[attr-defined]
        rendered = []
        for field, value in dyn.ListFields():
            name = f"({field.full_name})" if field.is_extension else field.name
            if field.message_type is not None:
                body = text_format.MessageToString(value, as_one_line=True)
                rendered.append(f"{name} = {{{body}}}")
            elif field.enum_type is not None:
                rendered.append(f"{name} = {field.enum_type.values_by_number[value].name}")
            elif isinstance(value, bool):
                rendered.append(f"{name} = {'true' if value else 'false'}")
            elif isinstance(value, str):
                rendered.append(f"{name} = {json.dumps(value)}")
            else:
                rendered.append(f"{name} = {value}")
        return rendered

    def _type(self, f: descriptor_pb2.FieldDescriptorProto) -> str:
        return f.type_name if f.type_name else _SCALARS[f.type]

    def _field(self, f: descriptor_pb2.FieldDescriptorProto, indent: str, in_oneof: bool) -> None:
        label = "" if in_oneof else _LABELS[f.label] + " "
        opts = []
        if f.HasField("default_value"):
            value = json.dumps(f.default_value) if f.type == 9 else f.default_value
            opts.append(f"default = {value}")
        default_json = "".join(p.capitalize() if i else p for i, p in enumerate(f.name.split("_")))
        if f.json_name and f.json_name != default_json:
            opts.append(f"json_name = {json.dumps(f.json_name)}")
        opts += self._options(f.options, "FieldOptions")
        suffix = f" [{', '.join(opts)}]" if opts else ""
        self.out.append(f"{indent}{label}{self._type(f)} {f.name} = {f.number}{suffix};")

    def _ranges(self, keyword: str, ranges: list, indent: str) -> None:
        parts = []
        for r in ranges:
            end = r.end - 1
            if end + 1 >= _MAX_FIELD:
                parts.append(f"{r.start} to max")
            elif end == r.start:
                parts.append(str(r.start))
            else:
                parts.append(f"{r.start} to {end}")
        if parts:
            self.out.append(f"{indent}{keyword} {', '.join(parts)};")

    def _message(self, m: descriptor_pb2.DescriptorProto, indent: str) -> None:
        self.out.append(f"{indent}message {m.name} {{")
        inner = indent + "  "
        for opt in self._options(m.options, "MessageOptions"):
            self.out.append(f"{inner}option {opt};")
        for nested in m.nested_type:
            self._message(nested, inner)
        for enum in m.enum_type:
            self._enum(enum, inner)
        printed_oneofs: set[int] = set()
        for f in m.field:
            if f.HasField("oneof_index") and not f.proto3_optional:
                idx = f.oneof_index
                if idx in printed_oneofs:
                    continue
                printed_oneofs.add(idx)
                decl = m.oneof_decl[idx]
                self.out.append(f"{inner}oneof {decl.name} {{")
                for opt in self._options(decl.options, "OneofOptions"):
                    self.out.append(f"{inner}  option {opt};")
                for g in m.field:
                    if g.HasField("oneof_index") and g.oneof_index == idx:
                        self._field(g, inner + "  ", in_oneof=True)
                self.out.append(f"{inner}}}")
            else:
                self._field(f, inner, in_oneof=False)
        self._ranges("extensions", list(m.extension_range), inner)
        self._ranges("reserved", list(m.reserved_range), inner)
        if m.reserved_name:
            self.out.append(f"{inner}reserved {', '.join(json.dumps(n) for n in m.reserved_name)};")
        self.out.append(f"{indent}}}")

    def _enum(self, e: descriptor_pb2.EnumDescriptorProto, indent: str) -> None:
        self.out.append(f"{indent}enum {e.name} {{")
        for opt in self._options(e.options, "EnumOptions"):
            self.out.append(f"{indent}  option {opt};")
        for v in e.value:
            opts = self._options(v.options, "EnumValueOptions")
            suffix = f" [{', '.join(opts)}]" if opts else ""
            self.out.append(f"{indent}  {v.name} = {v.number}{suffix};")
        ranges = [
            descriptor_pb2.DescriptorProto.ReservedRange(start=r.start, end=r.end + 1)
            for r in e.reserved_range
        ]
        self._ranges("reserved", ranges, indent + "  ")
        if e.reserved_name:
            self.out.append(f"{indent}  reserved {', '.join(json.dumps(n) for n in e.reserved_name)};")
        self.out.append(f"{indent}}}")

    def render(self) -> str:
        fd = self.fd
        self.out = [
            "// Rebuilt by scripts/vendor_protos.py from the descriptor shipped in the protovalidate wheel.",
            "// Source: https://github.com/bufbuild/protovalidate (Apache-2.0). Do not edit by hand.",
            f'syntax = "{fd.syntax or "proto2"}";',
            "",
            f"package {fd.package};",
            "",
        ]
        self.out += [f'import "{dep}";' for dep in fd.dependency]
        self.out.append("")
        self.out += [f"option {opt};" for opt in self._options(fd.options, "FileOptions")]
        for ext in fd.extension:
            self.out.append("")
            self.out.append(f"extend {ext.extendee} {{")
            self._field(ext, "  ", in_oneof=False)
            self.out.append("}")
        for m in fd.message_type:
            self.out.append("")
            self._message(m, "")
        for e in fd.enum_type:
            self.out.append("")
            self._enum(e, "")
        return "\n".join(self.out) + "\n"


def _normalized(fd: descriptor_pb2.FileDescriptorProto) -> str:
    fd = descriptor_pb2.FileDescriptorProto.FromString(fd.SerializeToString())
    fd.ClearField("source_code_info")
    return text_format.MessageToString(fd, print_unknown_fields=True)


def check_validate_rebuild(proto_path: pathlib.Path) -> None:
    """Recompile the rebuilt source and compare it with the shipped descriptor."""
    from grpc_tools import protoc

    include = pathlib.Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "out.binpb"
        args = ["protoc", f"-I{proto_path}", f"-I{include}", f"--descriptor_set_out={out}", VALIDATE]
        if protoc.main(args) != 0:
            raise SystemExit("rebuilt validate.proto does not compile")
        rebuilt = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    shipped = descriptor_pb2.FileDescriptorProto.FromString(shipped_validate_descriptor())
    if _normalized(rebuilt) != _normalized(shipped):
        raise SystemExit("rebuilt validate.proto differs from the shipped descriptor")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only verify the vendored buf/validate source")
    args = parser.parse_args()
    if not args.check:
        for rel in GOOGLE_FILES:
            target = DEST / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_wheel_file("googleapis-common-protos", rel), target)
        fd = descriptor_pb2.FileDescriptorProto.FromString(shipped_validate_descriptor())
        target = DEST / VALIDATE
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_Printer(fd).render())
        subprocess.run(["buf", "format", "-w", str(target)], check=True, cwd=ROOT)
    check_validate_rebuild(DEST)
    print("third_party/protos is up to date and buf/validate matches the protovalidate wheel")
    return 0


if __name__ == "__main__":
    sys.exit(main())
