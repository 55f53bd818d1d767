#!/usr/bin/env bash
# Sets up (first run only) and runs every check CI runs: notice lint, ruff, mypy, pytest.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
.venv/bin/python -m policies lint
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/mypy tests benchmarks
exec .venv/bin/python -m pytest -q "$@"
