#!/usr/bin/env bash
# Print where `go mod download` puts MODULE@VERSION (fetched from the Go module proxy when missing).
# Usage: scripts/go-module-dir.sh MODULE@VERSION     GO=/path/to/go to choose the toolchain.
set -euo pipefail
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
# Outside any module, so the caller's folder and a go.work never matter.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
dir=$(GOWORK=off GOFLAGS=-mod=mod "$GO" mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] || { echo "go-module-dir: $1 was not downloaded" >&2; exit 1; }
echo "$dir"
