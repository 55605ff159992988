#!/usr/bin/env bash
# Build the components and serving images under the tags the pipelines name
# (components/common/images.py, derived from the package version), and print both tags on stdout.
# Progress and timings go to stderr; each build's full log to docker/build-<image>.log in the
# driftpilot cache ($DRIFTPILOT_CACHE, default ${XDG_CACHE_HOME:-~/.cache}/driftpilot).
#
# The base is the local driftpilot/debian-base:bookworm that ./scripts/ensure-docker.sh makes with
# debootstrap (no registry needed); DRIFTPILOT_BASE_IMAGE=python:3.11.14-slim-bookworm builds on the
# python image instead. The engine caches the layers: a warm rebuild takes about a second, a source
# edit rebuilds only the package layer. The builder and package stages are tagged too
# (driftpilot-build/<image>:<stage>), so the untagged images of earlier builds can be pruned
# without losing the cache.
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${DRIFTPILOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/driftpilot}
log() { echo "build-images: $*" >&2; }
ms_now() { echo $(($(date +%s%N) / 1000000)); }

./scripts/setup.sh >&2
base=$(./scripts/ensure-docker.sh)
version=$(.venv/bin/python -c 'from importlib.metadata import version; print(version("driftpilot"))')
read -r components_image serving_image < <(
  .venv/bin/python -c 'from components.common.images import COMPONENTS_IMAGE, SERVING_IMAGE
print(COMPONENTS_IMAGE, SERVING_IMAGE)'
)
mkdir -p "$cache/docker"

build() {
  local name=$1 tag=$2 build_log started ms size target
  build_log=$cache/docker/build-$name.log
  started=$(ms_now)
  log "building $tag on $base (images/$name/Dockerfile, log $build_log) ..."
  : >"$build_log"
  for target in builder package ""; do
    local args=(--network=host --file "images/$name/Dockerfile" --build-arg BASE_IMAGE="$base" --build-arg VERSION="$version")
    if [ -n "$target" ]; then
      args+=(--target "$target" --tag "driftpilot-build/$name:$target")
    else
      args+=(--tag "$tag")
    fi
    if ! docker build "${args[@]}" . >>"$build_log" 2>&1; then
      log "building $tag failed; last lines of $build_log:"
      tail -n 30 "$build_log" >&2
      exit 1
    fi
  done
  ms=$(($(ms_now) - started))
  size=$(docker image inspect --format '{{.Size}}' "$tag")
  log "$tag: $((ms / 1000)).$((ms % 1000 / 100)) s, $((size / 1000000)) MB"
}

build components "$components_image"
build serving "$serving_image"
# Earlier builds' images lost their tags to these ones; what no tag still needs is freed.
docker image prune --force --filter label=org.driftpilot.build >/dev/null
echo "$components_image"
echo "$serving_image"
