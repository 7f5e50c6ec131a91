#!/usr/bin/env bash
# The whole test suite, from a fresh clone: bash scripts/test.sh
source "$(dirname "$0")/bootstrap.sh" test
cd "$ROOT"
set +e
"$VENV_PY" -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "no tests were collected: that is a failure" >&2
    exit 1
fi
exit "$status"
