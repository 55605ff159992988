#!/usr/bin/env bash
# Create .venv and install driftpilot with the pinned dependency set. Idempotent: an environment
# whose recorded inputs (pyproject.toml, constraints.txt) are unchanged is reused as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
stamp=.venv/.driftpilot-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setting up .venv (pinned by constraints.txt) ..."
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade "pip==25.3" "setuptools==80.9.0" "wheel==0.45.1" "uv==0.13.8"
# uv installs the ~200 pinned packages in parallel (seconds where pip takes minutes); it uses the
# system's certificate store like pip does. Bytecode is compiled now: every pipeline step is a
# fresh interpreter, and without .pyc files (or with PYTHONDONTWRITEBYTECODE) imports take 2-3x longer.
UV_NATIVE_TLS=1 .venv/bin/uv pip install --python .venv/bin/python --quiet --compile-bytecode -c constraints.txt -e ".[dev]"
echo "$want" > "$stamp"
