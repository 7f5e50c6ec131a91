#!/usr/bin/env bash
# The whole test suite, from a fresh clone: bash scripts/test.sh
# Another interpreter, in its own venv, with pytest options:
#   PYTHON=~/.pyenv/versions/3.13.0/bin/python VENV=.venv-3.13 bash scripts/test.sh -n 2 -q
source "$(dirname "$0")/bootstrap.sh" test
cd "$ROOT"
echo "test.sh: $("$VENV_PY" -c 'import sys; print("Python", sys.version.split()[0])') in $VENV_DIR"
set +e
"$VENV_PY" -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "no tests were collected: that is a failure" >&2
    exit 1
fi
exit "$status"
