#!/usr/bin/env bash
# The README's test command in a fresh virtualenv: installs the project with its test extra
# into the venv (from PyPI) and runs the lints and the tests whose outcome depends on the
# interpreter they run under (child processes, the wheel, the image's venv). CI runs it after
# the full suite under the system interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(mktemp -d)/venv"
trap 'rm -rf "$(dirname "$venv")"' EXIT
python3 -m venv "$venv"
# shellcheck disable=SC1091
source "$venv/bin/activate"
python3 -m pip install -q --disable-pip-version-check --upgrade pip
bash ./scripts/test.sh tests/artifacts/test_docker.py tests/e2e/test_cli.py tests/artifacts/test_deploy.py "$@"
