#!/usr/bin/env bash
# Create .venv with Python 3.10, install the pinned stack and the project (editable).
# Usage: scripts/setup_env.sh            (VENV=path to override the location)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

find_python310() {
  local candidates=()
  if command -v pyenv >/dev/null 2>&1; then
    local root; root=$(pyenv root)
    candidates+=( $(ls -d "$root"/versions/3.10.* 2>/dev/null | sort -V -r | sed 's|$|/bin/python|') )
  fi
  [ -n "${PYENV_ROOT:-}" ] && candidates+=( $(ls -d "$PYENV_ROOT"/versions/3.10.* 2>/dev/null | sed 's|$|/bin/python|') )
  candidates+=( "$HOME"/.pyenv/versions/3.10.*/bin/python python3.10 /usr/bin/python3.10 /usr/local/bin/python3.10 )
  for py in "${candidates[@]}"; do
    # A pyenv shim named python3.10 exists even when 3.10 is not selected: check it really runs 3.10.
    if "$py" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then
      echo "$py"; return 0
    fi
  done
  return 1
}

if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then
  echo "ERROR: $VENV exists but its Python is not 3.10 ($("$VENV/bin/python" --version 2>&1)). Remove it and re-run." >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  PY=$(find_python310) || {
    echo "ERROR: Python 3.10 not found. Looked for pyenv's versions/3.10.*/bin/python and a working" >&2
    echo "       'python3.10' on PATH. Install it (e.g. 'pyenv install 3.10.13') and re-run." >&2
    exit 1
  }
  echo "Using $PY"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -r requirements.txt
"$VENV/bin/python" -m pip install -q --no-deps -e .
"$VENV/bin/python" -c "import detectron2, torch, vis_zoo; print('vis_zoo ready: torch', torch.__version__, 'detectron2', detectron2.__version__)"
