#!/usr/bin/env bash
# Make a Docker engine answer and the base image of driftpilot's images exist, then print the base
# image's tag on stdout (progress goes to stderr). Idempotent: what is already there is reused.
#
# - Installs Debian's docker.io and debootstrap with apt-get when dockerd or debootstrap is missing.
# - Starts dockerd when no engine answers, with its data root in the driftpilot cache so image
#   layers survive between runs ($DRIFTPILOT_CACHE, default ${XDG_CACHE_HOME:-~/.cache}/driftpilot);
#   its log is docker/dockerd.log there.
# - Makes driftpilot/debian-base:bookworm (Debian's own python3, 3.11, on a minbase rootfs) with
#   debootstrap, so the images build where no container registry can be reached. The rootfs tarball
#   is cached (rootfs/): a lost data root is re-imported in seconds. Certificates the machine adds to
#   its trust store (/usr/local/share/ca-certificates) go into the base too, so installs in the image
#   trust what the machine trusts (e.g. an HTTPS proxy in front of PyPI); a change re-makes the base.
#
# Settings: DRIFTPILOT_BASE_IMAGE (another base, e.g. python:3.11.14-slim-bookworm, is pulled when
# missing), DRIFTPILOT_DEBIAN_MIRROR, DRIFTPILOT_DOCKER_STORAGE_DRIVER (default overlay2; vfs works
# everywhere, slowly).
set -euo pipefail

cache=${DRIFTPILOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/driftpilot}
docker_dir=$cache/docker
local_base=driftpilot/debian-base:bookworm
base_tag=${DRIFTPILOT_BASE_IMAGE:-$local_base}
suite=bookworm
mirror=${DRIFTPILOT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
include=python3,python3-venv,ca-certificates
storage_driver=${DRIFTPILOT_DOCKER_STORAGE_DRIVER:-overlay2}
extra_certs=/usr/local/share/ca-certificates
policy_rc=/usr/sbin/policy-rc.d
rootfs_label=org.driftpilot.rootfs

log() { echo "ensure-docker: $*" >&2; }
now() { date +%s; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    log "$1 needs root; run as root or $2"
    exit 1
  fi
}

install_packages() {
  local missing=() started created_policy=""
  command -v dockerd >/dev/null 2>&1 || engine_answers || missing+=(docker.io)
  # debootstrap makes the local base only; another base is pulled.
  [ "$base_tag" != "$local_base" ] || command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  [ ${#missing[@]} -eq 0 ] && return 0
  need_root "installing ${missing[*]}" "install them first"
  started=$(now)
  log "installing ${missing[*]} with apt-get (log $cache/apt-get.log) ..."
  # The engine is started below with our data root: keep the package from starting one of its own.
  if [ ! -e "$policy_rc" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy_rc"
    chmod 755 "$policy_rc"
    created_policy=1
    trap 'rm -f "$policy_rc"' EXIT
  fi
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends \
      "${missing[@]}"; } >"$cache/apt-get.log" 2>&1; then
    log "apt-get failed; last lines of $cache/apt-get.log:"
    tail -n 20 "$cache/apt-get.log" >&2
    exit 1
  fi
  if [ -n "$created_policy" ]; then
    rm -f "$policy_rc"
    trap - EXIT
  fi
  log "apt-get install: $(($(now) - started)) s"
}

engine_answers() {
  docker info >/dev/null 2>&1
}

start_engine() {
  engine_answers && return 0
  need_root "starting dockerd" "start a Docker engine first"
  local started pid
  started=$(now)
  mkdir -p "$docker_dir"
  log "starting dockerd (data root $docker_dir/data, $storage_driver, log $docker_dir/dockerd.log) ..."
  # setsid: the engine outlives this script and the job that ran it; 9>&-: it must not hold the lock.
  setsid dockerd --data-root "$docker_dir/data" --storage-driver "$storage_driver" \
    >>"$docker_dir/dockerd.log" 2>&1 </dev/null 9>&- &
  pid=$!
  for _ in $(seq 1 120); do
    if engine_answers; then
      log "dockerd ready (pid $pid): $(($(now) - started)) s"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  engine_answers && return 0 # another run started it first
  log "dockerd is not answering; last lines of $docker_dir/dockerd.log:"
  tail -n 20 "$docker_dir/dockerd.log" >&2
  exit 1
}

rootfs_key() {
  # The rootfs is reused while the suite, the packages and the machine's added certificates are the same.
  {
    echo "$suite $include $mirror"
    if [ -d "$extra_certs" ]; then
      find "$extra_certs" -type f -name '*.crt' -print0 | sort -z | xargs -0r cat
    fi
  } | sha256sum | cut -c1-16
}

remove_rootfs_dir() {
  # debootstrap mounts /proc and /sys inside the target; a failed run can leave them mounted.
  local dir=$1 mount
  # (grep finds nothing when nothing is mounted: not a failure)
  { findmnt -rn -o TARGET | grep "^$dir/" || true; } | sort -r | while read -r mount; do umount "$mount"; done
  if findmnt -rn -o TARGET | grep -q "^$dir/"; then
    log "left $dir in place: something is still mounted in it"
    return 0
  fi
  rm -rf "$dir" "$dir.log"
}

make_rootfs() {
  local tarball=$1 dir started
  need_root "debootstrap" "set DRIFTPILOT_BASE_IMAGE to an existing image"
  started=$(now)
  dir=$(mktemp -d "$cache/rootfs/build.XXXXXX")
  log "debootstrap --variant=minbase $suite from $mirror (about two minutes) ..."
  if ! debootstrap --variant=minbase --include="$include" "$suite" "$dir" "$mirror" >"$dir.log" 2>&1; then
    log "debootstrap failed; last lines of $dir.log:"
    tail -n 20 "$dir.log" >&2
    remove_rootfs_dir "$dir"
    exit 1
  fi
  if compgen -G "$extra_certs/*.crt" >/dev/null; then
    cp "$extra_certs"/*.crt "$dir/usr/local/share/ca-certificates/"
    chroot "$dir" update-ca-certificates >>"$dir.log" 2>&1
  fi
  # An image layer needs no package lists or caches.
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb
  tar -C "$dir" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  remove_rootfs_dir "$dir"
  log "debootstrap and tar: $(($(now) - started)) s ($(du -h "$tarball" | cut -f1))"
}

ensure_base_image() {
  local key tarball started found
  if [ "$base_tag" != "$local_base" ]; then
    docker image inspect "$base_tag" >/dev/null 2>&1 && return 0
    log "pulling $base_tag ..."
    docker pull --quiet "$base_tag" >&2
    return 0
  fi
  key=$(rootfs_key)
  found=$(docker image inspect --format "{{index .Config.Labels \"$rootfs_label\"}}" "$base_tag" 2>/dev/null || true)
  [ "$found" = "$key" ] && return 0
  tarball=$cache/rootfs/debian-$suite-minbase-$key.tar
  mkdir -p "$cache/rootfs"
  [ -f "$tarball" ] || make_rootfs "$tarball"
  started=$(now)
  docker import \
    --change "LABEL $rootfs_label=$key" \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap --variant=minbase --include=$include $suite" \
    "$tarball" "$base_tag" >/dev/null
  log "imported $base_tag: $(($(now) - started)) s"
}

mkdir -p "$cache"
# One run at a time: two would start two engines or debootstrap twice.
exec 9>"$cache/ensure-docker.lock"
flock 9
install_packages
start_engine
ensure_base_image
echo "$base_tag"
