#!/usr/bin/env bash
# Build the Kubernetes API server and etcd the integration tests start, once, into the driftpilot
# cache, and print that bin folder on stdout (progress goes to stderr). Idempotent: binaries whose
# version stamps match KUBERNETES_VERSION and ETCD_VERSION are reused.
# The cache is $DRIFTPILOT_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/driftpilot); Go keeps its
# module and build caches in their usual places, so a rebuild after a version bump is quicker.
#
# Neither program can be built with a plain `go install cmd@version`:
# - k8s.io/kubernetes requires its staging modules (k8s.io/api, k8s.io/apiserver, ...) at v0.0.0
#   and points them at ./staging/src with replace directives, which Go ignores outside the main
#   module. A wrapper module requires k8s.io/kubernetes and replaces every staging module with
#   its published twin (v1.X.Y is published as v0.X.Y); the list comes from kubernetes' own go.mod.
# - etcd's main package lives in the go.etcd.io/etcd/v3 root module, whose go.mod replaces its
#   sibling modules with relative paths too; a wrapper main calls go.etcd.io/etcd/server/v3/etcdmain.
set -euo pipefail

KUBERNETES_VERSION=v1.37.2
# The etcd minor kubernetes $KUBERNETES_VERSION builds against (its go.mod), at its latest patch.
ETCD_VERSION=v3.7.3

cache=${DRIFTPILOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/driftpilot}
bin_dir=$cache/bin
src_dir=$cache/src

fresh() { # fresh NAME VERSION: is bin/NAME built and stamped with VERSION?
  [ -x "$bin_dir/$1" ] && [ "$(cat "$bin_dir/$1.version" 2>/dev/null)" = "$2" ]
}

# The server reports its version (/version, which helm checks against a chart's kubeVersion) from
# these variables, as kubernetes' own build sets them; the stamp says the binary has them.
minor=${KUBERNETES_VERSION#v1.}
minor=${minor%%.*}
version_ldflags=""
for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_ldflags="$version_ldflags -X $package.gitVersion=$KUBERNETES_VERSION -X $package.gitMajor=1 -X $package.gitMinor=$minor"
  version_ldflags="$version_ldflags -X $package.gitTreeState=clean"
done
KUBE_STAMP="$KUBERNETES_VERSION with-version"

if fresh kube-apiserver "$KUBE_STAMP" && fresh etcd "$ETCD_VERSION"; then
  echo "$bin_dir"
  exit 0
fi

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
if [ ! -x "$GO" ]; then
  echo "ensure-k8s: Go not found; install Go >= 1.26 (kubernetes v1.37 needs it) or set GO=/path/to/go" >&2
  exit 1
fi
export CGO_ENABLED=0 GOWORK=off
mkdir -p "$bin_dir" "$src_dir"

build() { # build NAME STAMP MODULE_DIR PACKAGE [LDFLAGS]
  local name=$1 version=$2 dir=$3 package=$4 ldflags="-s -w ${5:-}" start=$SECONDS
  rm -f "$bin_dir/$name.version"
  (cd "$dir" && "$GO" build -trimpath -ldflags="$ldflags" -o "$bin_dir/$name.tmp" "$package")
  mv "$bin_dir/$name.tmp" "$bin_dir/$name"
  echo "$version" > "$bin_dir/$name.version"
  echo "ensure-k8s: built $name $version in $((SECONDS - start)) s" >&2
}

if ! fresh kube-apiserver "$KUBE_STAMP"; then
  echo "building kube-apiserver $KUBERNETES_VERSION into $bin_dir (many minutes the first time) ..." >&2
  dir=$src_dir/kube-apiserver-$KUBERNETES_VERSION
  rm -rf "$dir" && mkdir -p "$dir"
  kube_mod=$(cd "$dir" && "$GO" mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  staging_version=v0.${KUBERNETES_VERSION#v1.}
  {
    echo "module driftpilot.local/kube-apiserver"
    echo
    echo "go $(sed -n 's/^go \([0-9.]*\)$/\1/p' "$kube_mod")"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "replace ("
    sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/src/.*$#\1#p' "$kube_mod" |
      while read -r module; do echo "	$module => $module $staging_version"; done
    echo ")"
  } > "$dir/go.mod"
  if ! grep -q "k8s.io/apiserver => " "$dir/go.mod"; then
    echo "ensure-k8s: no staging replaces found in $kube_mod" >&2
    exit 1
  fi
  (cd "$dir" && "$GO" get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBERNETES_VERSION")
  build kube-apiserver "$KUBE_STAMP" "$dir" k8s.io/kubernetes/cmd/kube-apiserver "$version_ldflags"
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
