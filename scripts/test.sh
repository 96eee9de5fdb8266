#!/usr/bin/env bash
# Install everything the tests need, then run every check and the whole test suite.
# This is the command README.md gives and .ci/run calls; people and CI run it alike.
#   - PostgreSQL server binaries (Debian package `postgresql`) when none are installed;
#   - Node.js >= 18 and npm (Debian packages `nodejs npm`) when missing, then `npm ci` in clients/ts;
#   - Chromium (Debian package `chromium`) when missing: tests/gateway/test_docs_page.py loads the
#     /docs page in it, headless;
#   - a virtualenv in .venv with the project and its dev extras (pip install -e '.[dev]');
#   - buf lint / buf format / buf breaking against the last released contract, the vendored-proto
#     check, the generated-code drift checks (Python and TypeScript), ruff, mypy;
#   - pytest (the test session starts its own PostgreSQL server from the installed binaries; the
#     ecosystem tests run grpcurl and the TypeScript client's Node test against real servers).
set -euo pipefail
cd "$(dirname "$0")/.."

have_pg_bin() {
  command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1
}
have_node() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
    [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 18 ]
}
have_chromium() {
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1
}
APT_PACKAGES=()
have_pg_bin || APT_PACKAGES+=(postgresql)
have_node || APT_PACKAGES+=(nodejs npm)
have_chromium || APT_PACKAGES+=(chromium)
if [ ${#APT_PACKAGES[@]} -gt 0 ]; then
  echo "== installing ${APT_PACKAGES[*]} (apt)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${APT_PACKAGES[@]}" >/dev/null
  have_node || { echo "Node.js >= 18 is needed (found $(node --version 2>/dev/null || echo none))" >&2; exit 1; }
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  python3 -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
echo "== installing Python dependencies"
python -m pip install -q --upgrade pip >/dev/null
python -m pip install -q -e '.[dev]'

echo "== installing the TypeScript client's dependencies (npm ci, pinned by package-lock.json)"
(cd clients/ts && npm ci --no-audit --no-fund --loglevel=error)

echo "== buf lint / format"
buf lint
buf format -d --exit-code

echo "== buf breaking against the last released contract (CONTRIBUTING.md: Releasing the contract)"
LAST_RELEASE=$(ls protos/releases/usage-v*.binpb | sort -V | tail -n 1)
echo "   against $LAST_RELEASE"
buf breaking protos --against "$LAST_RELEASE"

echo "== vendored protos match the wheels"
python scripts/vendor_protos.py --check

echo "== generated code (stubs, descriptor set with comments) is up to date"
python scripts/gen_protos.py >/dev/null
if [ -n "$(git status --porcelain -- generated)" ]; then
  git status --porcelain -- generated
  git --no-pager diff --stat -- generated
  echo "generated/ differs from the protos: run python scripts/gen_protos.py and commit" >&2
  exit 1
fi
buf generate
if [ -n "$(git status --porcelain -- clients/ts/src/gen)" ]; then
  git status --porcelain -- clients/ts/src/gen
  echo "clients/ts/src/gen differs from the protos: run buf generate and commit" >&2
  exit 1
fi

echo "== ruff"
ruff check server scripts tests
ruff format --check server scripts tests

echo "== mypy"
mypy

echo "== pytest"
python -m pytest "$@"
