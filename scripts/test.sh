#!/usr/bin/env bash
# The whole test suite, from a fresh clone: bash scripts/test.sh
# Another interpreter, in its own venv, with pytest options:
#   PYTHON=~/.pyenv/versions/3.13.0/bin/python VENV=.venv-3.13 bash scripts/test.sh -n 2 -q
source "$(dirname "$0")/bootstrap.sh" test
cd "$ROOT"
# The proxy tests' real peers (tests/test_tls_and_proxies.py): Debian's tinyproxy and microsocks.
if ! command -v tinyproxy >/dev/null || ! command -v microsocks >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        peers=(tinyproxy microsocks)
        apt-get install -y -qq "${peers[@]}" >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "${peers[@]}" >/dev/null 2>&1; } ||
            echo "test.sh: could not install ${peers[*]}: the proxy tests will fail" >&2
    fi
fi
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
