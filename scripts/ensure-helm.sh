#!/usr/bin/env bash
# Build Helm 3 and Helm 4 from the Go module proxy, once, into the driftpilot cache, and print that
# bin folder on stdout (progress goes to stderr): `helm` is Helm 3, `helm4` is Helm 4. The chart
# is linted and rendered with both and installed with Helm 3. Idempotent: binaries whose version
# stamps match are reused. The cache is $DRIFTPILOT_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/driftpilot).
set -euo pipefail

HELM3_VERSION=v3.22.0
HELM4_VERSION=v4.3.1

bin_dir=${DRIFTPILOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/driftpilot}/bin
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

ensure() { # ensure NAME MODULE VERSION: the stamp also names the build flags, so a change rebuilds
  local name=$1 module=$2 version=$3 start=$SECONDS tmp stamp=$3
  [ "$module" = helm.sh/helm/v3 ] && stamp="$version k8s-version-from-client-go"
  if [ -x "$bin_dir/$name" ] && [ "$(cat "$bin_dir/$name.version" 2>/dev/null)" = "$stamp" ]; then
    return
  fi
  if [ ! -x "$GO" ]; then
    echo "ensure-helm: Go not found; install Go >= 1.25 or set GO=/path/to/go" >&2
    exit 1
  fi
  echo "building $name ($module $version) into $bin_dir ..." >&2
  mkdir -p "$bin_dir"
  rm -f "$bin_dir/$name.version"
  tmp=$(mktemp -d)
  local ldflags="-s -w -X $module/internal/version.version=$version"
  if [ "$module" = helm.sh/helm/v3 ]; then
    # As Helm 3's Makefile does: the Kubernetes version it assumes without a cluster (template,
    # lint) is that of the client-go it is built with; without these flags it assumes v1.20.
    local dir minor
    dir=$(GO=$GO "$(dirname "$0")/go-module-dir.sh" "$module@$version")
    minor=$(sed -n 's#^[[:space:]]*k8s.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$dir/go.mod")
    for package in pkg/lint/rules pkg/chartutil; do
      ldflags="$ldflags -X $module/$package.k8sVersionMajor=1 -X $module/$package.k8sVersionMinor=$minor"
    done
  fi
  # Both majors install a binary named helm: build each into its own folder, then rename.
  GOBIN=$tmp CGO_ENABLED=0 "$GO" install -trimpath -ldflags="$ldflags" "$module/cmd/helm@$version"
  mv "$tmp/helm" "$bin_dir/$name"
  rm -rf "$tmp"
  echo "$stamp" > "$bin_dir/$name.version"
  echo "ensure-helm: built $name $version in $((SECONDS - start)) s" >&2
}

ensure helm helm.sh/helm/v3 "$HELM3_VERSION"
ensure helm4 helm.sh/helm/v4 "$HELM4_VERSION"
echo "$bin_dir"
