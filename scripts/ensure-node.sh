#!/usr/bin/env bash
# Provide what a real single-node Kubernetes cluster needs beside the API server and etcd that
# ensure-k8s.sh builds: kubelet, kube-controller-manager, kube-scheduler, kube-proxy, kubectl,
# containerd (with ctr and the runc shim), crictl, CoreDNS and the pause image, built once into the
# driftpilot cache, plus runc, iptables, conntrack, iproute2 and the CNI plugins from Debian.
# Prints that bin folder on stdout (progress goes to stderr). Idempotent: pieces whose version
# stamps match the versions below are reused; Debian packages are installed only when missing.
# The cache is $DRIFTPILOT_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/driftpilot), as for
# ensure-k8s.sh; the CNI plugins stay where Debian puts them, $CNI_BIN_DIR below.
#
# How each piece is built:
# - The kubernetes commands come from k8s.io/kubernetes through a wrapper module (kube_wrapper in
#   kube-build.sh) in a folder of their own, so this script and ensure-k8s.sh never rebuild each
#   other's.
# - containerd, cri-tools and CoreDNS have no replace directives, so a wrapper that only requires
#   the module builds exactly the dependency versions their own go.mod selects.
# - The pause image is pause.c from the kubernetes module, compiled statically with gcc, and packed
#   by hand into a docker-archive tarball (docker is not needed) that `ctr images import` reads.
set -euo pipefail

KUBERNETES_VERSION=v1.37.2
# The newest containerd the Go module proxy serves; its CRI plugin defaults to PAUSE_VERSION.
CONTAINERD_VERSION=v2.4.2
# cri-tools is versioned with kubernetes' minor (its module path is sigs.k8s.io/cri-tools).
CRICTL_VERSION=v1.37.0
COREDNS_VERSION=v1.15.0
# kubeadm's PauseVersion in kubernetes $KUBERNETES_VERSION and containerd's DefaultSandboxImage.
PAUSE_VERSION=3.10.2
PAUSE_IMAGE=registry.k8s.io/pause:$PAUSE_VERSION
CNI_BIN_DIR=/usr/lib/cni
# runc, iptables, conntrack, ip and the CNI plugins are used at run time; gcc and libc6-dev (its
# static libc) build the pause binary.
DEBIAN_PACKAGES="runc iptables conntrack iproute2 containernetworking-plugins gcc libc6-dev"

BUILD_NAME=ensure-node
# shellcheck source=scripts/kube-build.sh
. "$(dirname "$0")/kube-build.sh"

missing_packages() { # print the Debian packages that are not installed
  local package
  for package in $DEBIAN_PACKAGES; do
    [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$package" 2>/dev/null)" = "ii " ] || echo "$package"
  done
}

KUBE_COMMANDS="kubelet kube-controller-manager kube-scheduler kube-proxy kubectl"
PAUSE_STAMP="$PAUSE_VERSION from $KUBERNETES_VERSION"

all_fresh() {
  local name
  for name in $KUBE_COMMANDS; do fresh "$name" "$KUBE_STAMP" || return 1; done
  for name in containerd ctr containerd-shim-runc-v2; do fresh "$name" "$CONTAINERD_VERSION" || return 1; done
  fresh crictl "$CRICTL_VERSION" && fresh coredns "$COREDNS_VERSION" && fresh pause.tar "$PAUSE_STAMP" &&
    [ -z "$(missing_packages)" ]
}

if all_fresh; then
  echo "$bin_dir"
  exit 0
fi

mkdir -p "$bin_dir" "$src_dir"

# Debian first: gcc and libc6-dev are needed for the pause binary, the rest only at run time.
# apt's chatter goes to a log that is shown only when the install fails.
missing=$(missing_packages | tr '\n' ' ')
if [ -n "${missing// /}" ]; then
  echo "ensure-node: installing Debian packages: $missing" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  apt_log=$cache/apt-get.log
  # shellcheck disable=SC2086 # one word per package
  if ! { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
  } > "$apt_log" 2>&1; then
    tail -n 20 "$apt_log" >&2
    echo "ensure-node: apt-get install $missing failed; the whole log is $apt_log" >&2
    exit 1
  fi
fi
echo "ensure-node: CNI plugins are in $CNI_BIN_DIR, runc is $(command -v runc || echo /usr/sbin/runc)" >&2

if [ ! -x "$GO" ]; then
  echo "ensure-node: Go not found; install Go >= 1.26.6 (containerd $CONTAINERD_VERSION needs it) or set GO=/path/to/go" >&2
  exit 1
fi
export GOWORK=off

wrapper() { # wrapper DIR MODULE VERSION PACKAGE...: a fresh module in DIR requiring them
  local dir=$1 module=$2 version=$3
  shift 3
  rm -rf "$dir" && mkdir -p "$dir"
  printf 'module driftpilot.local/%s\n\ngo 1.26\n\nrequire %s %s\n' "${dir##*/}" "$module" "$version" > "$dir/go.mod"
  # go get raises the go line to what the module needs and records the packages' dependencies.
  (cd "$dir" && "$GO" get "${@/%/@$version}")
}

stale=""
for name in $KUBE_COMMANDS; do fresh "$name" "$KUBE_STAMP" || stale="$stale $name"; done
if [ -n "$stale" ]; then
  echo "building$stale $KUBERNETES_VERSION into $bin_dir (many minutes the first time) ..." >&2
  # shellcheck disable=SC2086 # one word per command
  kube_wrapper "$src_dir/kube-node-$KUBERNETES_VERSION" $stale
  for name in $stale; do
    build "$name" "$KUBE_STAMP" "$src_dir/kube-node-$KUBERNETES_VERSION" "k8s.io/kubernetes/cmd/$name" "$kube_ldflags"
  done
fi

stale=""
for name in containerd ctr containerd-shim-runc-v2; do fresh "$name" "$CONTAINERD_VERSION" || stale="$stale $name"; done
if [ -n "$stale" ]; then
  echo "building$stale $CONTAINERD_VERSION into $bin_dir ..." >&2
  module=github.com/containerd/containerd/v2
  dir=$src_dir/containerd-$CONTAINERD_VERSION
  # shellcheck disable=SC2046,SC2086 # one word per command
  wrapper "$dir" "$module" "$CONTAINERD_VERSION" $(printf "$module/cmd/%s " $stale)
  # The Makefile's release flags. With cgo off the btrfs snapshotter (cgo only) drops out by its
  # own build constraint; overlayfs, native, devmapper and erofs stay. No build tag is required.
  ldflags="-X $module/version.Version=$CONTAINERD_VERSION -X $module/version.Package=$module"
  for name in $stale; do
    build "$name" "$CONTAINERD_VERSION" "$dir" "$module/cmd/$name" "$ldflags" urfave_cli_no_docs
  done
fi

if ! fresh crictl "$CRICTL_VERSION"; then
  echo "building crictl $CRICTL_VERSION into $bin_dir ..." >&2
  dir=$src_dir/crictl-$CRICTL_VERSION
  wrapper "$dir" sigs.k8s.io/cri-tools "$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl
  build crictl "$CRICTL_VERSION" "$dir" sigs.k8s.io/cri-tools/cmd/crictl \
    "-X sigs.k8s.io/cri-tools/pkg/version.Version=${CRICTL_VERSION#v}"
fi

if ! fresh coredns "$COREDNS_VERSION"; then
  echo "building coredns $COREDNS_VERSION into $bin_dir ..." >&2
  dir=$src_dir/coredns-$COREDNS_VERSION
  # The main package is the module root; the version it prints is a constant in coremain.
  wrapper "$dir" github.com/coredns/coredns "$COREDNS_VERSION" github.com/coredns/coredns
  build coredns "$COREDNS_VERSION" "$dir" github.com/coredns/coredns
fi

if ! fresh pause.tar "$PAUSE_STAMP"; then
  echo "building $PAUSE_IMAGE into $bin_dir/pause.tar ..." >&2
  start=$SECONDS
  rm -f "$bin_dir/pause.tar.version"
  kube_dir=$(cd "$src_dir" && "$GO" mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  dir=$src_dir/pause-$PAUSE_VERSION
  rm -rf "$dir" && mkdir -p "$dir/rootfs" "$dir/image"
  # build/pause/Makefile's flags; glibc links statically here (pause.c needs no NSS or dlopen).
  gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-$KUBERNETES_VERSION" \
    -o "$dir/rootfs/pause" "$kube_dir/build/pause/linux/pause.c"
  strip "$dir/rootfs/pause"
  # Fixed owners, order and times: the same sources give the same layer digest, so an image
  # imported once is recognised on the next import.
  reproducible=(--sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=gnu)
  tar -C "$dir/rootfs" "${reproducible[@]}" -cf "$dir/image/layer.tar" pause
  layer_digest=$(sha256sum "$dir/image/layer.tar" | cut -d' ' -f1)
  mkdir -p "$dir/image/$layer_digest"
  mv "$dir/image/layer.tar" "$dir/image/$layer_digest/layer.tar"
  # As build/pause/Dockerfile: FROM scratch, USER 65535:65535, ENTRYPOINT ["/pause"].
  epoch=1970-01-01T00:00:00Z arch=$("$GO" env GOARCH)
  config='{"architecture":"'$arch'","os":"linux","created":"'$epoch'",'
  config+='"config":{"User":"65535:65535","Entrypoint":["/pause"]},'
  config+='"rootfs":{"type":"layers","diff_ids":["sha256:'$layer_digest'"]},'
  config+='"history":[{"created":"'$epoch'","created_by":"driftpilot scripts/ensure-node.sh"}]}'
  config_digest=$(printf '%s' "$config" | sha256sum | cut -d' ' -f1)
  printf '%s' "$config" > "$dir/image/$config_digest.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]\n' \
    "$config_digest" "$PAUSE_IMAGE" "$layer_digest" > "$dir/image/manifest.json"
  tar -C "$dir/image" "${reproducible[@]}" -cf "$bin_dir/pause.tar.tmp" \
    manifest.json "$config_digest.json" "$layer_digest"
  mv "$bin_dir/pause.tar.tmp" "$bin_dir/pause.tar"
  echo "$PAUSE_STAMP" > "$bin_dir/pause.tar.version"
  echo "ensure-node: built pause.tar $PAUSE_STAMP in $((SECONDS - start)) s" >&2
fi

echo "$bin_dir"
