"""Regenerate generated/ (Python messages, gRPC stubs and their .pyi type stubs) from the protos, and
the contract's descriptor set with source info (generated/usage/v1/descriptor_set.binpb): the
files of protos/ with the doc comment of every element, which the generated modules leave out.
Server reflection answers from it (so `grpcurl describe` shows the comments) and the gateway's
OpenAPI document takes its descriptions from it (server/contract.py).

generated/ is a source root without __init__.py files: `usage.v1.*` and `buf.validate.*` are
namespace packages, importable once the project is installed (pip install -e . or pip install .).
buf/validate is generated here because protovalidate 2.x ships no google.protobuf module for it.

Run: python scripts/gen_protos.py      (CI runs it and fails on any diff in generated/)
"""

from __future__ import annotations

import pathlib
import shutil
import sys

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "generated"
OWN = ROOT / "protos"
THIRD_PARTY = ROOT / "third_party" / "protos"
# Only files no installed wheel provides as Python modules; google.api/google.rpc come from
# googleapis-common-protos, the well-known types from protobuf.
THIRD_PARTY_GENERATED = ["buf/validate/validate.proto"]
# Only the contract's own files: their imports come from the generated modules at run time.
DESCRIPTOR_SET = OUT / "usage" / "v1" / "descriptor_set.binpb"


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    own = sorted(str(p.relative_to(OWN)) for p in OWN.rglob("*.proto"))
    wkt = pathlib.Path(protoc.__file__).parent / "_proto"
    bin_dir = pathlib.Path(sys.executable).parent  # protoc-gen-mypy_grpc lives beside python
    args = [
        "protoc",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"-I{OWN}",
        f"-I{THIRD_PARTY}",
        f"-I{wkt}",
        f"--python_out={OUT}",
        f"--pyi_out={OUT}",
        *own,
        *THIRD_PARTY_GENERATED,
    ]
    if protoc.main(args) != 0:
        return 1
    grpc_args = [
        "protoc",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"-I{OWN}",
        f"-I{THIRD_PARTY}",
        f"-I{wkt}",
        f"--grpc_python_out={OUT}",
        f"--mypy_grpc_out={OUT}",
        *[p for p in own if p.endswith("_service.proto")],
    ]
    if protoc.main(grpc_args) != 0:
        return 1
    descriptor_args = [
        "protoc",
        f"-I{OWN}",
        f"-I{THIRD_PARTY}",
        f"-I{wkt}",
        f"--descriptor_set_out={DESCRIPTOR_SET}",
        "--include_source_info",
        *own,
    ]
    if protoc.main(descriptor_args) != 0:
        return 1
    print(f"regenerated {OUT.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
