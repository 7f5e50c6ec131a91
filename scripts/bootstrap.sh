# Sourced by the README's commands: make the venv (once) and install this project into it.
#
#   PYTHON  the interpreter that makes the venv (default: python3)
#   VENV    where the venv lives, relative to the repository or absolute (default: .venv)
#
# With neither set this is exactly what `bash scripts/test.sh` and `bash scripts/demo.sh` use.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
VENV_DIR="${VENV:-.venv}"
case "$VENV_DIR" in
    /*) ;;
    *) VENV_DIR="$ROOT/$VENV_DIR" ;;
esac
EXTRAS="${1:-test}"
if [ ! -x "$VENV_DIR/bin/python" ]; then
    "$PY" -m venv "$VENV_DIR"
elif [ -n "${PYTHON:-}" ]; then
    # A venv left by another interpreter would silently test the wrong Python.
    want="$("$PY" -c 'import sys; print(sys.version_info[:2])')"
    have="$("$VENV_DIR/bin/python" -c 'import sys; print(sys.version_info[:2])')"
    if [ "$want" != "$have" ]; then
        echo "bootstrap: $VENV_DIR holds Python $have, not $PY's $want; remove it or pick" \
            "another VENV" >&2
        exit 1
    fi
fi
STAMP="$VENV_DIR/.installed-$EXTRAS"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
    "$VENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[$EXTRAS]"
    touch "$STAMP"
fi
VENV_PY="$VENV_DIR/bin/python"
