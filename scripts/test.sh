#!/usr/bin/env bash
# Installs everything the tests need (Debian's prometheus for promtool and a real server, the
# package with its test extra) and runs every check: ruff, mypy --strict, the documentation
# site's strict build, the whole pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq prometheus >/dev/null
fi
if ! command -v openssl >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'

echo "== ruff check"; python3 -m ruff check .
echo "== ruff format --check"; python3 -m ruff format --check .
echo "== mypy --strict exporter"; python3 -m mypy --strict exporter
# The docs site, built strict (a broken link or anchor, a page missing from the nav: an error)
# into a temporary directory; tests/artifacts/test_docs.py builds it too, so a failure names the page.
echo "== mkdocs build --strict"
site="$(mktemp -d)"
NO_MKDOCS_2_WARNING=1 python3 -m mkdocs build --strict --quiet --site-dir "$site"
rm -rf "$site"
# Six workers on two cores: most modules wait on sockets and child processes, so six keep both
# cores busy (docs/testing.md has the times with 4, 6 and 8). A module's tests stay on one
# worker (--dist loadfile): they share module-scoped simulators and processes.
echo "== pytest"; python3 -m pytest -q -n 6 --dist loadfile --durations=15 "$@"
