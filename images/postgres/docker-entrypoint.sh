#!/usr/bin/env bash
# Entrypoint of the locally built postgres:<major> images, following the official image's
# contract (docker-library/postgres):
#   - `docker-entrypoint.sh postgres [args]` (the default CMD); a first arg starting with "-"
#     is taken as server options;
#   - started as root: make $PGDATA and the socket dir, hand them to postgres (uid 999), re-exec
#     as that user; started as uid 999 directly (runAsUser), it just proceeds;
#   - first start (no $PGDATA/PG_VERSION): initdb with POSTGRES_USER (default postgres) and
#     POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_INITDB_ARGS,
#     POSTGRES_INITDB_WALDIR; `host all all all <method>` in pg_hba.conf (scram-sha-256 by
#     default); create POSTGRES_DB (default: the user's name); run /docker-entrypoint-initdb.d/
#     *.sh, *.sql, *.sql.gz against a socket-only temporary server; stop it;
#   - then exec the server (listen_addresses='*', port 5432).
# *_FILE variants (POSTGRES_PASSWORD_FILE, ...) are honoured as in the official image.
set -Eeo pipefail

file_env() {   # file_env VAR [DEFAULT]: VAR or the content of the file named by VAR_FILE
  local var="$1" fileVar="${1}_FILE" def="${2:-}" val
  if [[ -n "${!var:-}" && -n "${!fileVar:-}" ]]; then
    echo >&2 "error: both $var and $fileVar are set (but are exclusive)"; exit 1
  fi
  val="$def"
  if [[ -n "${!var:-}" ]]; then val="${!var}"
  elif [[ -n "${!fileVar:-}" ]]; then val="$(< "${!fileVar}")"; fi
  export "$var"="$val"
  unset "$fileVar"
}

if [[ "${1:0:1}" == '-' ]]; then set -- postgres "$@"; fi

# As the official image, on every start and as any user: PGDATA exists and is 0700. (A volume
# mounted with an fsGroup comes back g+rwx,setgid after each mount, which the server refuses.)
if [[ "$1" == postgres ]]; then
  mkdir -p "$PGDATA"
  chmod 00700 "$PGDATA" || :
fi

if [[ "$1" == postgres ]] && [[ "$(id -u)" == 0 ]]; then
  find "$PGDATA" \! -user postgres -exec chown postgres '{}' +
  mkdir -p /var/run/postgresql
  chown postgres:postgres /var/run/postgresql
  chmod 03775 /var/run/postgresql || :
  if [[ -n "${POSTGRES_INITDB_WALDIR:-}" ]]; then
    mkdir -p "$POSTGRES_INITDB_WALDIR"; chown postgres:postgres "$POSTGRES_INITDB_WALDIR"; chmod 700 "$POSTGRES_INITDB_WALDIR"
  fi
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
fi

if [[ "$1" == postgres ]] && [[ ! -s "$PGDATA/PG_VERSION" ]]; then
  file_env POSTGRES_PASSWORD
  file_env POSTGRES_USER postgres
  file_env POSTGRES_DB "$POSTGRES_USER"
  file_env POSTGRES_INITDB_ARGS
  : "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
  if [[ -z "$POSTGRES_PASSWORD" && "$POSTGRES_HOST_AUTH_METHOD" != trust ]]; then
    cat >&2 <<'MSG'
Error: Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the
       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".

       You may also use "POSTGRES_HOST_AUTH_METHOD=trust" to allow all
       connections without a password. This is *not* recommended.
MSG
    exit 1
  fi
  mkdir -p "$PGDATA"; chmod 00700 "$PGDATA" 2>/dev/null || :
  if [[ -n "${POSTGRES_INITDB_WALDIR:-}" ]]; then
    set -- "$@"; POSTGRES_INITDB_ARGS="--waldir $POSTGRES_INITDB_WALDIR $POSTGRES_INITDB_ARGS"
  fi
  echo "initdb: initialising $PGDATA for user $POSTGRES_USER"
  # shellcheck disable=SC2086
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") $POSTGRES_INITDB_ARGS
  printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >> "$PGDATA/pg_hba.conf"

  export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start
  psql_=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
  if [[ "$POSTGRES_DB" != postgres ]]; then
    "${psql_[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh)     if [[ -x "$f" ]]; then echo "running $f"; "$f"; else echo "sourcing $f"; . "$f"; fi ;;
      *.sql)    echo "running $f"; "${psql_[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
      *.sql.gz) echo "running $f"; gunzip -c "$f" | "${psql_[@]}" --dbname "$POSTGRES_DB" ;;
      *)        [[ -e "$f" ]] && echo "ignoring $f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop
  unset PGPASSWORD
  echo "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
