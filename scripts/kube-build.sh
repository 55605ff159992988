# shellcheck shell=bash disable=SC2034 # the variables are for the scripts that source this file
# Sourced by ensure-k8s.sh, ensure-node.sh and ensure-kserve.sh: how they build Go commands into the
# driftpilot cache. Defines bin_dir, src_dir, GO, fresh, build and kube_wrapper, and, when
# KUBERNETES_VERSION is set, KUBE_STAMP and kube_ldflags; BUILD_NAME (the sourcing script's name)
# prefixes progress lines.

cache=${DRIFTPILOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/driftpilot}
bin_dir=$cache/bin
src_dir=$cache/src
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

fresh() { # fresh NAME VERSION: is bin/NAME built and stamped with VERSION?
  [ -f "$bin_dir/$1" ] && [ "$(cat "$bin_dir/$1.version" 2>/dev/null)" = "$2" ]
}

# The components report their version (/version, which helm checks against a chart's
# kubeVersion; the kubelet's is the node's) from these variables, as kubernetes' own build sets
# them; the stamp says a binary has them.
if [ -n "${KUBERNETES_VERSION:-}" ]; then
  kube_minor=${KUBERNETES_VERSION#v1.}
  kube_minor=${kube_minor%%.*}
  kube_ldflags=""
  for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kube_ldflags="$kube_ldflags -X $package.gitVersion=$KUBERNETES_VERSION -X $package.gitMajor=1"
    kube_ldflags="$kube_ldflags -X $package.gitMinor=$kube_minor -X $package.gitTreeState=clean"
  done
  KUBE_STAMP="$KUBERNETES_VERSION with-version"
fi

build() { # build NAME STAMP MODULE_DIR PACKAGE [LDFLAGS [TAGS]]
  local name=$1 version=$2 dir=$3 package=$4 ldflags="-s -w ${5:-}" tags=${6:-} start=$SECONDS
  rm -f "$bin_dir/$name.version"
  (cd "$dir" && CGO_ENABLED=0 GOWORK=off "$GO" build -trimpath -tags="$tags" -ldflags="$ldflags" \
    -o "$bin_dir/$name.tmp" "$package")
  mv "$bin_dir/$name.tmp" "$bin_dir/$name"
  echo "$version" > "$bin_dir/$name.version"
  echo "$BUILD_NAME: built $name $version in $((SECONDS - start)) s" >&2
}

# k8s.io/kubernetes requires its staging modules (k8s.io/api, k8s.io/apiserver, ...) at v0.0.0 and
# points them at ./staging/src with replace directives, which Go ignores outside the main module.
# The wrapper requires k8s.io/kubernetes and replaces every staging module with its published twin
# (v1.X.Y is published as v0.X.Y); the list comes from kubernetes' own go.mod.
kube_wrapper() { # kube_wrapper DIR COMMAND...: a wrapper module in DIR that builds cmd/COMMAND...
  local dir=$1 kube_mod staging_version=v0.${KUBERNETES_VERSION#v1.}
  shift
  rm -rf "$dir" && mkdir -p "$dir"
  kube_mod=$(cd "$dir" && GOWORK=off "$GO" mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  {
    echo "module driftpilot.local/${dir##*/}"
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
    echo "$BUILD_NAME: no staging replaces found in $kube_mod" >&2
    exit 1
  fi
  # shellcheck disable=SC2046 # one word per command
  (cd "$dir" && GOWORK=off "$GO" get $(printf "k8s.io/kubernetes/cmd/%s@$KUBERNETES_VERSION " "$@"))
}
