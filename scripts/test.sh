#!/usr/bin/env bash
# Set everything up and run the test suite: lint, type checks, unit, component and integration tests.
# The integration tests start a MinIO server that ./scripts/ensure-minio.sh builds with Go (once, cached),
# and a Kubernetes API server with its etcd that ./scripts/ensure-k8s.sh builds the same way; they
# install the chart with the Helm that ./scripts/ensure-helm.sh builds, into that server with the real
# CRDs ./scripts/ensure-crds.sh gathers; the chart's MLflow server runs on a PostgreSQL server from
# Debian's package (./scripts/ensure-postgres.sh); the browser tests drive the incidents page in Debian's
# headless Chromium (./scripts/ensure-chromium.sh); both images are built by ./scripts/build-images.sh
# on a Docker engine it starts (root on Debian) and run by the image tests. The cluster tests start a
# real single-node cluster (tests/cluster.py) from the node parts ./scripts/ensure-node.sh builds, and
# install the chart there on our images and the stand-ins ./scripts/build-stand-ins.sh builds; the
# KServe manager ./scripts/ensure-kserve.sh builds reconciles InferenceServices there.
# Extra arguments go to pytest (e.g. ./scripts/test.sh -m "not integration").
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# The tests also fit CTGAN: its optional extra (torch) joins .venv, cached.
./scripts/ensure-ctgan.sh
# Both images build in the background (mostly downloads) while Go builds the servers below.
images_log=$(mktemp)
./scripts/build-images.sh >"$images_log" 2>&1 &
images_pid=$!
export DRIFTPILOT_DATA_DIR=${DRIFTPILOT_DATA_DIR:-$(cd .. && pwd)/shared/data}
DRIFTPILOT_MINIO_BIN=$(./scripts/ensure-minio.sh)
export DRIFTPILOT_MINIO_BIN
DRIFTPILOT_K8S_BIN_DIR=$(./scripts/ensure-k8s.sh)
export DRIFTPILOT_K8S_BIN_DIR
DRIFTPILOT_HELM_BIN_DIR=$(./scripts/ensure-helm.sh)
export DRIFTPILOT_HELM_BIN_DIR
DRIFTPILOT_CRDS_DIR=$(./scripts/ensure-crds.sh)
export DRIFTPILOT_CRDS_DIR
DRIFTPILOT_POSTGRES_BIN_DIR=$(./scripts/ensure-postgres.sh)
export DRIFTPILOT_POSTGRES_BIN_DIR
DRIFTPILOT_CHROMEDRIVER=$(./scripts/ensure-chromium.sh)
export DRIFTPILOT_CHROMEDRIVER
# The node cluster's parts land beside the API server (one bin folder), and so does the KServe manager.
./scripts/ensure-node.sh >/dev/null
DRIFTPILOT_KSERVE_DIR=$(./scripts/ensure-kserve.sh)
export DRIFTPILOT_KSERVE_DIR
if ! wait "$images_pid"; then
  cat "$images_log" >&2
  echo "test.sh: building the images failed (log above)" >&2
  exit 1
fi
grep '^build-images: .*: [0-9.]* s' "$images_log" >&2 || true
export DRIFTPILOT_IMAGES=1
# The browser test's screenshots of the incidents page stay here for a person to look at.
export DRIFTPILOT_SCREENSHOT_DIR=${DRIFTPILOT_SCREENSHOT_DIR:-$PWD/.driftpilot/screenshots}
# The chart's upstream MinIO and PostgreSQL images, for the node cluster that reaches no registry.
stand_ins=$(./scripts/build-stand-ins.sh)
DRIFTPILOT_MINIO_IMAGE=$(sed -n 1p <<<"$stand_ins")
DRIFTPILOT_POSTGRES_IMAGE=$(sed -n 2p <<<"$stand_ins")
export DRIFTPILOT_MINIO_IMAGE DRIFTPILOT_POSTGRES_IMAGE
.venv/bin/ruff check components pipelines tests scripts
.venv/bin/mypy
# The cluster tests mostly wait on pods and controllers, so they run beside the others (their output
# follows). Given a marker expression (-m), one pytest runs it. Exit code 5 is "nothing selected".
for arg in "$@"; do
  if [[ $arg == -m* ]]; then
    exec .venv/bin/pytest "$@"
  fi
done
cluster_log=$(mktemp)
.venv/bin/pytest -m cluster "$@" >"$cluster_log" 2>&1 &
cluster_pid=$!
status=0
.venv/bin/pytest -m "not cluster" "$@" || status=$?
cluster_status=0
wait "$cluster_pid" || cluster_status=$?
echo "test.sh: the cluster tests (-m cluster):"
cat "$cluster_log"
if ((status == 5 && cluster_status == 5)); then
  exit 5
fi
for code in "$status" "$cluster_status"; do
  if ((code != 0 && code != 5)); then
    exit "$code"
  fi
done
