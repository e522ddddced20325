#!/usr/bin/env bash
# Set up (see setup.sh), lint, and run the whole test suite against real slapd, SMTP and Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
