"""The generated TypeScript client (clients/ts: protoc-gen-es + connect-node) against a running server:
`npm test` compiles the client and its test with tsc, then `node --test` ingests, queries with each
query RPC, re-reads a page as of its answer's `asOf` (and is refused a future one), voids and amends
events and reads their history, and decodes rich error details
(clients/ts/test/client.test.ts). README's TypeScript
example is clients/ts/examples/first-page.ts, word for word, and runs as its comment says.
scripts/test.sh runs `npm ci` in clients/ts first."""

from __future__ import annotations

import re
import shutil
import subprocess

from ecosystem_support import ROOT, env_without_usage
from grpc_harness import Harness, event

TS = ROOT / "clients" / "ts"


def test_typescript_client_round_trip(harness: Harness) -> None:
    npm = shutil.which("npm")
    assert npm, "npm not found: scripts/test.sh installs Node.js (apt nodejs npm)"
    assert (TS / "node_modules" / "@connectrpc" / "connect-node").is_dir(), "run `npm ci` in clients/ts"
    env = env_without_usage() | {"USAGE_ADDRESS": harness.address, "USAGE_TOKEN": harness.token("org_ts")}
    result = subprocess.run([npm, "test"], cwd=TS, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    # Every test of the file ran and passed (counted from the file: adding a test needs no change here).
    declared = sum(
        line.startswith("test(")
        for f in (TS / "test").glob("*.test.ts")
        for line in f.read_text().splitlines()
    )
    assert declared >= 7 and f"# pass {declared}\n" in result.stdout, result.stdout
    assert "# fail 0" in result.stdout, result.stdout
    # The calls reached this server: the ingest and every query RPC were counted.
    handled = harness.running.observability.handled
    for method, code in [
        ("IngestUsageEvents", "OK"),
        ("ListUsageEvents", "OK"),
        ("ListCustomerUsageEvents", "OK"),
        ("ListCustomerUsageEvents", "INVALID_ARGUMENT"),
        ("AggregateUsage", "OK"),
        ("ListUsageEvents", "UNAUTHENTICATED"),
        ("ListUsageEvents", "INVALID_ARGUMENT"),  # the future as_of
    ]:
        assert handled.labels("usage.v1.UsageService", method, code)._value.get() >= 1, (method, code)


def test_the_readme_typescript_example_runs_as_written(harness: Harness) -> None:
    example = TS / "examples" / "first-page.ts"
    (snippet,) = re.findall(r"```ts\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert snippet == example.read_text()
    npm = shutil.which("npm")
    assert npm, "npm not found: scripts/test.sh installs Node.js (apt nodejs npm)"
    # As the example's comment says: npm run build, then node dist/examples/first-page.js.
    built = subprocess.run([npm, "run", "build"], cwd=TS, capture_output=True, text=True, timeout=180)
    assert built.returncode == 0, built.stdout + built.stderr
    (accepted,) = harness.client("org_ts_example").ingest(event("cus_1", timestamp="2026-01-10T10:00:00Z"))
    env = env_without_usage() | {
        "USAGE_ADDRESS": harness.address,
        "USAGE_TOKEN": harness.token("org_ts_example"),
    }
    node = shutil.which("node")
    assert node
    ran = subprocess.run(
        [node, "dist/examples/first-page.js"], cwd=TS, env=env, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [
        f"{accepted.event_id} cus_1 api_call 1",
        "more: false",
        "limit: must be 0 or more",
    ]
