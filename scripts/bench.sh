#!/usr/bin/env bash
# The benchmark, from a fresh clone: bash scripts/bench.sh [--quick] [--only NAME] [--output F]
# Installs the `bench` extra (the PostHog SDK it compares against, Flask) into the venv first.
source "$(dirname "$0")/bootstrap.sh" bench
cd "$ROOT"
exec "$VENV_PY" scripts/bench.py "$@"
