"""The documentation a clone holds is all it needs: every Markdown link of the repository's documents
points inside the repository, to a file that exists and, with a `#fragment`, to a heading of it; and no
document, test or source file leans on the design notes that live outside the repository."""

from __future__ import annotations

import re
import subprocess

import pytest
from ecosystem_support import ROOT

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
OUTSIDE = re.compile(r"\.\./shared|DESIGN\.md")


def tracked(*patterns: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True, check=True)
    return [p for p in out.stdout.splitlines() if "node_modules" not in p and not p.startswith("third_party")]


DOCUMENTS = tracked("*.md")


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: str) -> set[str]:
    text = FENCE.sub("", (ROOT / path).read_text())
    return {anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def test_the_documents_are_there() -> None:
    assert {
        "README.md",
        "CONTRIBUTING.md",
        "CHANGELOG.md",
        "SECURITY.md",
        "docs/api.md",
        "docs/architecture.md",
        "docs/operations.md",
        "docs/scaling.md",
    } <= set(DOCUMENTS)
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_link_stays_inside_the_repository(document: str) -> None:
    text = FENCE.sub("", (ROOT / document).read_text())
    links = LINK.findall(text)
    here = (ROOT / document).parent
    for target in links:
        assert "://" not in target and not target.startswith("mailto:"), (document, target)
        path, _, fragment = target.partition("#")
        resolved = (here / path).resolve() if path else ROOT / document
        assert resolved.is_relative_to(ROOT.resolve()), (document, target)
        assert resolved.exists(), (document, target)
        if fragment:
            assert resolved.is_file() and resolved.suffix == ".md", (document, target)
            assert fragment in anchors(str(resolved.relative_to(ROOT.resolve()))), (document, target)


def test_nothing_leans_on_notes_outside_the_repository() -> None:
    files = [*DOCUMENTS, *tracked("tests/*.py", "server/*.py", "scripts/*", "clients/ts/*.ts")]
    # This test names what it looks for; the generated client is protoc's.
    files = [f for f in files if f != "tests/ecosystem/test_docs_links.py" and "/gen/" not in f]
    assert len(files) > 50
    leaning = [(f, m.group(0)) for f in files for m in OUTSIDE.finditer((ROOT / f).read_text())]
    assert leaning == []
