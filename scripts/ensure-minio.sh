#!/usr/bin/env bash
# Build the MinIO server the integration tests start, once, into the driftpilot cache, and print
# its path on stdout. Idempotent: a binary whose version stamp matches MINIO_VERSION is reused.
# The cache is $DRIFTPILOT_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/driftpilot); Go keeps its
# module and build caches in their usual places, so a rebuild after a version bump is quick.
set -euo pipefail

# MinIO publishes no semver tags; this is the pseudo-version of the module's last commit.
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c

bin_dir=${DRIFTPILOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/driftpilot}/bin
stamp=$bin_dir/minio.version

if [ -x "$bin_dir/minio" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$MINIO_VERSION" ]; then
  echo "$bin_dir/minio"
  exit 0
fi

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
if [ ! -x "$GO" ]; then
  echo "ensure-minio: Go not found; install Go >= 1.24 or set GO=/path/to/go" >&2
  exit 1
fi
echo "building minio $MINIO_VERSION into $bin_dir (several minutes the first time) ..." >&2
mkdir -p "$bin_dir"
rm -f "$stamp"
GOBIN=$bin_dir CGO_ENABLED=0 "$GO" install -trimpath "github.com/minio/minio@$MINIO_VERSION"
echo "$MINIO_VERSION" > "$stamp"
echo "$bin_dir/minio"
