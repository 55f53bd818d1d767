#!/usr/bin/env bash
# Creates .venv and installs the project with its dev tools; re-installs only when
# pyproject.toml changed since the last install. Sourced by start.sh and test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "需要 Python 3.11 或更高版本 (Python >= 3.11 is required); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "Installing dependencies into .venv ..." >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check -U pip >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' >&2
  rm -f .venv/.installed-*
  touch "$stamp"
fi
