#!/usr/bin/env bash
# Install everything the tests need, then run every check and the whole test suite.
# This is the command README.md gives and .ci/run calls; people and CI run it alike.
#   - PostgreSQL server binaries (Debian package `postgresql`) when none are installed;
#   - a virtualenv in .venv with the project and its dev extras (pip install -e '.[dev]');
#   - buf lint / buf format, the vendored-proto check, the generated-code drift check, ruff, mypy;
#   - pytest (the test session starts its own PostgreSQL server from the installed binaries).
set -euo pipefail
cd "$(dirname "$0")/.."

have_pg_bin() {
  command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1
}
if ! have_pg_bin; then
  echo "== installing PostgreSQL server (apt package postgresql)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
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

echo "== buf lint / format"
buf lint
buf format -d --exit-code

echo "== vendored protos match the wheels"
python scripts/vendor_protos.py --check

echo "== generated code is up to date"
python scripts/gen_protos.py >/dev/null
if [ -n "$(git status --porcelain -- generated)" ]; then
  git status --porcelain -- generated
  git --no-pager diff --stat -- generated
  echo "generated/ differs from the protos: run python scripts/gen_protos.py and commit" >&2
  exit 1
fi

echo "== ruff"
ruff check server scripts tests
ruff format --check server scripts tests

echo "== mypy"
mypy

echo "== pytest"
python -m pytest "$@"
