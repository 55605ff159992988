#!/usr/bin/env bash
# Make sure PostgreSQL's server programs are installed (Debian's postgresql package, when run as
# root on Debian) and print their folder on stdout. The integration tests start their own server
# from it, on a free port, for the chart's MLflow and Optuna databases.
set -euo pipefail
# shellcheck disable=SC2012  # fixed system paths, sorted by version
find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
dir=$(find_bin)
if [ -z "$dir" ] || [ ! -x "$dir/postgres" ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "ensure-postgres: PostgreSQL not found; install its server package (Debian: postgresql)" >&2
    exit 1
  fi
  echo "installing Debian's postgresql ..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends postgresql >&2 ||
    { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends postgresql >&2; }
  dir=$(find_bin)
fi
echo "$dir"
