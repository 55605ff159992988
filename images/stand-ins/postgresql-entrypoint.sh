#!/bin/sh
# The official postgres image's entrypoint contract, for Debian's PostgreSQL: on an empty PGDATA,
# initdb with POSTGRES_USER as the superuser and POSTGRES_PASSWORD as its password (scram-sha-256
# over TCP, from any address), create POSTGRES_DB, run /docker-entrypoint-initdb.d/*.sql and *.sh
# once on a server that listens on its socket only; then run the server on every address.
set -eu
pgdata=${PGDATA:-/var/lib/postgresql/data}
socket_dir=/var/run/postgresql
if [ "${1:-}" != postgres ]; then
  exec "$@"
fi
shift
if [ ! -s "$pgdata/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "docker-entrypoint: POSTGRES_PASSWORD is empty: set it to the superuser's password" >&2
    exit 1
  fi
  user=${POSTGRES_USER:-postgres}
  database=${POSTGRES_DB:-$user}
  mkdir -p "$pgdata"
  chmod 700 "$pgdata"
  password_file=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$password_file"
  initdb --pgdata="$pgdata" --username="$user" --pwfile="$password_file" \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$password_file"
  echo "host all all all scram-sha-256" >>"$pgdata/pg_hba.conf"
  pg_ctl --pgdata="$pgdata" --wait --silent --options="-c listen_addresses='' -k $socket_dir" start
  psql=$(printf 'psql -v ON_ERROR_STOP=1 --no-psqlrc --host=%s --username=%s' "$socket_dir" "$user")
  if [ "$database" != postgres ]; then
    $psql --dbname=postgres --quiet --command="CREATE DATABASE \"$database\""
  fi
  for script in /docker-entrypoint-initdb.d/*; do
    case $script in
      *.sql) echo "docker-entrypoint: running $script"; $psql --dbname="$database" --file="$script" ;;
      *.sh)
        echo "docker-entrypoint: running $script"
        # shellcheck disable=SC1090  # the init scripts are the deployment's own
        . "$script"
        ;;
      *) if [ -e "$script" ]; then echo "docker-entrypoint: ignoring $script"; fi ;;
    esac
  done
  pg_ctl --pgdata="$pgdata" --wait --silent --mode=fast stop
  echo "docker-entrypoint: initialized $pgdata (user $user, database $database)"
fi
exec postgres -D "$pgdata" -c listen_addresses='*' -k "$socket_dir" "$@"
