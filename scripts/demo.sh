#!/usr/bin/env bash
# The demo, from a fresh clone: bash scripts/demo.sh
source "$(dirname "$0")/bootstrap.sh" test
cd "$ROOT"
exec "$VENV_PY" scripts/demo.py "$@"
