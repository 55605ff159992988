#!/usr/bin/env bash
# Build the Kubernetes API server and etcd the integration tests start, once, into the driftpilot
# cache, and print that bin folder on stdout (progress goes to stderr). Idempotent: binaries whose
# version stamps match KUBERNETES_VERSION and ETCD_VERSION are reused.
# The cache is $DRIFTPILOT_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/driftpilot); Go keeps its
# module and build caches in their usual places, so a rebuild after a version bump is quicker.
#
# Neither program can be built with a plain `go install cmd@version`:
# - k8s.io/kubernetes needs a wrapper module for its staging modules (kube_wrapper in kube-build.sh).
# - etcd's main package lives in the go.etcd.io/etcd/v3 root module, whose go.mod replaces its
#   sibling modules with relative paths too; a wrapper main calls go.etcd.io/etcd/server/v3/etcdmain.
set -euo pipefail

KUBERNETES_VERSION=v1.37.2
# The etcd minor kubernetes $KUBERNETES_VERSION builds against (its go.mod), at its latest patch.
ETCD_VERSION=v3.7.3

BUILD_NAME=ensure-k8s
# shellcheck source=scripts/kube-build.sh
. "$(dirname "$0")/kube-build.sh"

if fresh kube-apiserver "$KUBE_STAMP" && fresh etcd "$ETCD_VERSION"; then
  echo "$bin_dir"
  exit 0
fi

if [ ! -x "$GO" ]; then
  echo "ensure-k8s: Go not found; install Go >= 1.26 (kubernetes v1.37 needs it) or set GO=/path/to/go" >&2
  exit 1
fi
export GOWORK=off
mkdir -p "$bin_dir" "$src_dir"

if ! fresh kube-apiserver "$KUBE_STAMP"; then
  echo "building kube-apiserver $KUBERNETES_VERSION into $bin_dir (many minutes the first time) ..." >&2
  dir=$src_dir/kube-apiserver-$KUBERNETES_VERSION
  kube_wrapper "$dir" kube-apiserver
  build kube-apiserver "$KUBE_STAMP" "$dir" k8s.io/kubernetes/cmd/kube-apiserver "$kube_ldflags"
fi

if ! fresh etcd "$ETCD_VERSION"; then
  echo "building etcd $ETCD_VERSION into $bin_dir ..." >&2
  dir=$src_dir/etcd-$ETCD_VERSION
  rm -rf "$dir" && mkdir -p "$dir"
  cat > "$dir/main.go" <<'EOF'
// Command etcd is the etcd server, built from the published go.etcd.io/etcd/server/v3 module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  printf 'module driftpilot.local/etcd\n\ngo 1.25\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > "$dir/go.mod"
  (cd "$dir" && "$GO" mod tidy)
  build etcd "$ETCD_VERSION" "$dir" .
fi

echo "$bin_dir"
