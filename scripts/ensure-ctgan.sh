#!/usr/bin/env bash
# Add the optional CTGAN extra (ctgan and PyPI's torch, about 5 GB installed) to .venv for the
# tests. uv keeps the downloads in its cache, so after the first time this is a local copy; the
# default install (./scripts/setup.sh) stays without torch. Idempotent, like setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
stamp=.venv/.driftpilot-ctgan-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "adding the ctgan extra (torch) to .venv ..." >&2
UV_NATIVE_TLS=1 .venv/bin/uv pip install --python .venv/bin/python --quiet -c constraints.txt -e ".[dev,ctgan]" >&2
echo "$want" > "$stamp"
