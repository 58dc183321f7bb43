#!/usr/bin/env bash
# Create .venv with pnas and its dependencies (idempotent: skips pip when pyproject.toml is
# unchanged since the last successful install). Usage: bash scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [[ -z $PY ]]; then
  for c in python3.11 python3.12 python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(not ((3,11) <= sys.version_info[:2] <= (3,12)))'; then PY=$c; break; fi
  done
fi
[[ -n $PY ]] || { echo "setup: Python 3.11 or 3.12 is needed (apt-get install python3 python3-venv)" >&2; exit 1; }
extra=""; [[ ${1:-} == --dev ]] && extra="[dev]"
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv || { echo "setup: could not create .venv (apt-get install python3-venv)" >&2; exit 1; }
fi
stamp=".venv/.pnas-installed$extra"
want=$(sha1sum pyproject.toml | cut -c1-40)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  # uv installs the same versions as pip (checked side by side with `pip freeze`) in seconds
  # from its cache instead of pip's 2-3 minutes; pip does it where uv cannot be had.
  # setuptools' "Editable installation." BuildBackendWarning (a flat layout's folders may
  # shadow the package) gets past -q; PYTHONWARNINGS reaches the build backend's process.
  export PYTHONWARNINGS="ignore:Editable installation"
  if ! { .venv/bin/python -m pip install -q uv && .venv/bin/python -m uv pip install -q --python .venv/bin/python -e ".$extra"; }; then
    echo "setup: uv could not install; installing with pip" >&2
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".$extra"
  fi
  echo "$want" > "$stamp"
fi
