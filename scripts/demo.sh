#!/usr/bin/env bash
# Set everything up and run the demo on the real GDELT files: train, replay batches through the
# drift-response pipeline, serve the champion and query it. Extra arguments go to `driftpilot demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export DRIFTPILOT_DATA_DIR=${DRIFTPILOT_DATA_DIR:-$(cd .. && pwd)/shared/data}
exec .venv/bin/driftpilot demo "$@"
