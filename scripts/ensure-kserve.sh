#!/usr/bin/env bash
# Build the KServe controller manager (github.com/kserve/kserve/cmd/manager) the cluster tests run
# out of cluster against the single-node cluster, once, into the driftpilot cache, and print the
# KServe module's source folder on stdout (its config/ holds the inferenceservice-config ConfigMap
# and the webhook configurations the tests install; progress goes to stderr). Idempotent: a binary
# whose version stamp matches KSERVE_VERSION is reused.
# The cache is $DRIFTPILOT_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/driftpilot), as for
# ensure-k8s.sh.
#
# `go install github.com/kserve/kserve/cmd/manager@version` is refused: kserve's go.mod pins
# controller-runtime, the k8s.io modules, grpc and others with replace directives (and excludes one
# version), which Go ignores outside the main module. The wrapper module requires kserve and
# copies those replace and exclude directives from kserve's own go.mod.
set -euo pipefail

# KSERVE_VERSION, the one the cluster runs (the CRDs ensure-crds.sh gathers are of it too).
# shellcheck source=manifests/platform/versions.env
. "$(dirname "$0")/../manifests/platform/versions.env"
KSERVE_MODULE=github.com/kserve/kserve

BUILD_NAME=ensure-kserve
# shellcheck source=scripts/kube-build.sh
. "$(dirname "$0")/kube-build.sh"

module_dir=$("$(dirname "$0")/go-module-dir.sh" "$KSERVE_MODULE@$KSERVE_VERSION")

if fresh kserve-manager "$KSERVE_VERSION"; then
  echo "$module_dir"
  exit 0
fi

if [ ! -x "$GO" ]; then
  echo "ensure-kserve: Go not found; install Go >= 1.25 or set GO=/path/to/go" >&2
  exit 1
fi
export GOWORK=off
mkdir -p "$bin_dir" "$src_dir"

echo "building the KServe manager $KSERVE_VERSION into $bin_dir (minutes the first time) ..." >&2
dir=$src_dir/kserve-$KSERVE_VERSION
rm -rf "$dir" && mkdir -p "$dir"
{
  echo "module driftpilot.local/kserve"
  echo
  echo "go $(sed -n 's/^go \([0-9.]*\)$/\1/p' "$module_dir/go.mod")"
  echo
  echo "require $KSERVE_MODULE $KSERVE_VERSION"
  echo
  # Every replace and exclude directive of kserve's go.mod, single lines and blocks alike.
  awk '/^(replace|exclude) \(/ { block = 1 }
       block || /^(replace|exclude) [^(]/ { print }
       /^\)/ { block = 0 }' "$module_dir/go.mod"
} > "$dir/go.mod"
if ! grep -q "sigs.k8s.io/controller-runtime => " "$dir/go.mod"; then
  echo "ensure-kserve: no replace directives found in $module_dir/go.mod" >&2
  exit 1
fi
(cd "$dir" && "$GO" get "$KSERVE_MODULE/cmd/manager@$KSERVE_VERSION")
build kserve-manager "$KSERVE_VERSION" "$dir" "$KSERVE_MODULE/cmd/manager"

echo "$module_dir"
