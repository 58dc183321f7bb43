#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer on 127.0.0.1 for the integration tests, installing
# (Debian packages) and starting them when they do not. Creates the test database.
# Idempotent; needs root (or sudo) only when something has to be installed or started.
set -euo pipefail
# This checkout's own test database and Redis database number, from a hash of its path (the
# same as tests/conftest.py's checkout_names), so two checkouts on one machine do not collide.
root=$(cd "$(dirname "$0")/.." && pwd -P)
tag=$(printf '%s' "$root" | sha1sum | cut -c1-8)
db="pnas_test_$tag"
redis_db=$((1 + 16#$tag % 15))
if [[ ${1:-} == --names ]]; then echo "$db $redis_db"; exit 0; fi
SUDO=""; [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null && SUDO=sudo
say() { printf 'services: %s\n' "$*" >&2; }
apt_install() {
  say "installing $*"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}
pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

command -v pg_isready >/dev/null || apt_install postgresql postgresql-client
if ! pg_up; then
  [[ -d /etc/postgresql ]] || apt_install postgresql
  say "starting PostgreSQL"
  ver=$(ls /etc/postgresql | sort -V | tail -n 1)
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  pg_up || { say "PostgreSQL did not start"; exit 1; }
fi
command -v redis-server >/dev/null || apt_install redis-server
if ! redis_up; then
  say "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/pnas-redis.log
  for _ in $(seq 1 30); do redis_up && break; sleep 0.5; done
  redis_up || { say "Redis did not start"; exit 1; }
fi
# The dashboard's browser tests drive Debian's headless Chromium through its chromedriver.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  apt_install chromium chromium-driver
fi
# PgBouncer (bench/store_load.py) and kubectl (tests/deploy: `kubectl kustomize`), Debian's.
[[ -x /usr/sbin/pgbouncer ]] || command -v pgbouncer >/dev/null || apt_install pgbouncer
command -v kubectl >/dev/null || apt_install kubernetes-client
# The tests' database. Prints the URL the tests should use (PNAS_TEST_PG_URL) on stdout.
# Trust auth over TCP (a developer machine, this workplace): user postgres. Otherwise, on a
# fresh Debian install (password auth over TCP), a role of our own made through the local
# socket as the postgres OS user, with a new random password each time.
if [[ -n ${PNAS_TEST_PG_URL:-} ]]; then
  say "PostgreSQL and Redis are up (PNAS_TEST_PG_URL is set)"
  echo "$PNAS_TEST_PG_URL"
  exit 0
fi
if psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1" >/dev/null 2>&1; then
  url="postgresql://postgres@127.0.0.1:5432/$db"
  psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1 from pg_database where datname='$db'" | grep -q 1 \
    || psql -h 127.0.0.1 -U postgres -d postgres -qc "create database $db"
else
  as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }
  as_pg psql -d postgres -tAc "select 1" >/dev/null 2>&1 || {
    say "cannot log in to PostgreSQL as postgres (neither over TCP nor as the postgres OS user); set PNAS_TEST_PG_URL"
    exit 1
  }
  pw=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
  # a role per checkout too: a new password for one checkout's role leaves the others' alone
  as_pg psql -d postgres -qc "do \$\$ begin
      if not exists (select from pg_roles where rolname = '$db') then
        create role $db login superuser;  -- the tests create databases and roles and switch to them
      end if; end \$\$;" >/dev/null
  as_pg psql -d postgres -qc "alter role $db superuser password '$pw'" >/dev/null
  as_pg psql -d postgres -tAc "select 1 from pg_database where datname='$db'" | grep -q 1 \
    || as_pg psql -d postgres -qc "create database $db owner $db" >/dev/null
  url="postgresql://$db:$pw@127.0.0.1:5432/$db"
  say "made role $db for the tests (password auth over TCP)"
fi
say "PostgreSQL and Redis are up"
echo "$url"
