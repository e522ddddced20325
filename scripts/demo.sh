#!/usr/bin/env bash
# Set up (see setup.sh) and start the demo: slapd with sample people, SMTP on loopback, the app.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pwdrst.demo "$@"
