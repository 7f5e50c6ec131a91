#!/usr/bin/env bash
# Install check: what a user gets from `pip install visivo-telemetry`, not what a checkout has.
#
# Builds the sdist and, from it, the wheel (python -m build); checks both archives; installs the
# wheel (not editable) into a fresh venv together with PyPI's unrelated `sender` distribution;
# and, from a folder outside the source tree with a decoy `sender/` on PYTHONPATH and in the
# working directory, runs a tiny host whose event must reach a local collector on 127.0.0.1.
#
#   bash scripts/check_install.sh            (PYTHON=... picks the interpreter; default python3)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/visivo-install-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
PIP_QUIET=(--quiet --disable-pip-version-check)

step() { echo "check_install: $*"; }

step "$("$PY" -c 'import sys; print("Python", sys.version.split()[0])') ($PY), work folder $WORK"

# Build tools, and the collector's store (sqlite-utils), in a venv of their own: the venv under
# test gets nothing but the wheel, its dependencies and PyPI's `sender`.
"$PY" -m venv "$WORK/tools"
"$WORK/tools/bin/python" -m pip install "${PIP_QUIET[@]}" build sqlite-utils
TOOLS_PY="$WORK/tools/bin/python"

step "building the sdist, then the wheel from that sdist"
"$TOOLS_PY" -m build --outdir "$WORK/dist" "$ROOT" >"$WORK/build.log" 2>&1 || {
    cat "$WORK/build.log" >&2
    exit 1
}
"$TOOLS_PY" "$ROOT/scripts/check_install.py" archives "$WORK/dist"

step "installing the wheel and PyPI's sender==0.3 into a fresh venv"
"$PY" -m venv "$WORK/venv"
SENDER_DIST="sender==0.3"
if ! "$WORK/venv/bin/python" -m pip download "${PIP_QUIET[@]}" --no-deps -d "$WORK/pypi" \
    "sender==0.3" >"$WORK/download.log" 2>&1; then
    step "PyPI did not serve sender==0.3; using a local stand-in with a top-level sender.Mail"
    "$TOOLS_PY" "$ROOT/scripts/check_install.py" standin "$WORK/pypi"
    SENDER_DIST="$(ls "$WORK"/pypi/sender-*.whl)"
fi
"$WORK/venv/bin/python" -m pip install "${PIP_QUIET[@]}" --find-links "$WORK/pypi" \
    "$(ls "$WORK"/dist/*.whl)" "$SENDER_DIST"

"$TOOLS_PY" "$ROOT/scripts/check_install.py" installed "$WORK/venv" "$WORK"
"$TOOLS_PY" "$ROOT/scripts/check_install.py" deliver "$WORK/venv" "$WORK"
step "all checks passed"
