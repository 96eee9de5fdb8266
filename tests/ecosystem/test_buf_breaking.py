"""`buf breaking` against the last released contract (the newest protos/releases/usage-vX.Y.Z.binpb,
a committed buf image): the current protos pass, and incompatible edits fail with the FILE rule that
catches them. scripts/test.sh runs the same check on the real tree."""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess

import pytest
from ecosystem_support import ROOT


def _version(path: pathlib.Path) -> tuple[int, ...]:
    return tuple(int(x) for x in path.name.removeprefix("usage-v").removesuffix(".binpb").split("."))


# The newest released image, as scripts/test.sh picks it (sort -V).
RELEASE = max((ROOT / "protos" / "releases").glob("usage-v*.binpb"), key=_version)


def breaking(buf: str, workdir: pathlib.Path) -> tuple[int, list[dict[str, str]]]:
    result = subprocess.run(
        [buf, "breaking", "protos", "--against", str(RELEASE), "--error-format", "json"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0 or found, result.stderr
    return result.returncode, found


@pytest.fixture
def copy(tmp_path: pathlib.Path) -> pathlib.Path:
    """A copy of the workspace's contract (buf.yaml, protos/, third_party/protos/) to edit."""
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(ROOT / "protos", tmp_path / "protos")
    shutil.copytree(ROOT / "third_party", tmp_path / "third_party")
    return tmp_path


def edit(path: pathlib.Path, pattern: str, replacement: str) -> None:
    text = path.read_text()
    new, n = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE)
    assert n == 1, pattern
    path.write_text(new)


def test_the_current_contract_is_compatible_with_the_release(buf: str) -> None:
    assert RELEASE.is_file()
    assert breaking(buf, ROOT) == (0, [])


def test_a_compatible_change_passes(buf: str, copy: pathlib.Path) -> None:
    events = copy / "protos/usage/v1/events.proto"
    edit(
        events, r"^message UsageEvent \{\n", "message UsageEvent {\n  // A new field.\n  string note = 99;\n"
    )
    assert breaking(buf, copy) == (0, [])


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        # Renumbering a field deletes the old number (and its wire meaning).
        ((r"string customer_id = 3;", "string customer_id = 33;"), "FIELD_NO_DELETE"),
        # Deleting an RPC breaks every generated client that calls it.
        (
            (
                r"  rpc AggregateUsage\(AggregateUsageRequest\)",
                "  rpc AggregateUsageV2(AggregateUsageRequest)",
            ),
            "RPC_NO_DELETE",
        ),
        # Changing a field's type changes its encoding.
        ((r"int32 total = 1;", "int64 total = 1;"), "FIELD_SAME_TYPE"),
    ],
    ids=["renumber-field", "rename-rpc", "change-type"],
)
def test_an_incompatible_change_fails(
    buf: str, copy: pathlib.Path, change: tuple[str, str], rule: str
) -> None:
    for path in (copy / "protos/usage/v1").glob("*.proto"):
        if re.search(change[0], path.read_text()):
            edit(path, *change)
            break
    else:
        raise AssertionError(f"{change[0]} not found")
    code, found = breaking(buf, copy)
    assert code != 0
    assert rule in {f["type"] for f in found}, found
