#!/usr/bin/env bash
# Build the stand-ins for the upstream images the chart runs beside ours (MinIO, PostgreSQL), for a
# cluster that reaches no registry (the tests' node cluster), and print their tags on stdout, MinIO's
# first. images/stand-ins/ says what each holds; MinIO is the binary ./scripts/ensure-minio.sh builds.
# The base is the local Debian base of ./scripts/ensure-docker.sh; the engine caches the layers.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "build-stand-ins: $*" >&2; }
base=$(./scripts/ensure-docker.sh)
minio_bin=$(./scripts/ensure-minio.sh)
# ensure-minio.sh records the module version it built (a pseudo-version) beside the binary.
minio_version=$(cat "$minio_bin.version")
minio_image=driftpilot-stand-in/minio:${minio_version//[^A-Za-z0-9_.-]/-}
postgres_image=driftpilot-stand-in/postgresql:15

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$minio_bin" "$context/minio"
build() {
  local tag=$1 dockerfile=$2 dir=$3 started=$SECONDS
  if ! docker build --network=host --quiet --build-arg BASE_IMAGE="$base" --file "$dockerfile" \
    --tag "$tag" "$dir" >/dev/null 2>"$context/build.log"; then
    cat "$context/build.log" >&2
    log "building $tag from $dockerfile failed (its output above)"
    exit 1
  fi
  log "$tag: $((SECONDS - started)) s"
}
build "$minio_image" images/stand-ins/minio.Dockerfile "$context"
build "$postgres_image" images/stand-ins/postgresql.Dockerfile images/stand-ins
echo "$minio_image"
echo "$postgres_image"
