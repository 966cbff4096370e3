#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# GIIP_STRICT_SKIPS=1: a skip whose reason tests/conftest.py does not expect fails the run
GIIP_STRICT_SKIPS=1 exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
