#!/usr/bin/env bash
# Sets up (first run only) and starts the main job.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
exec .venv/bin/python -m bot "$@"
