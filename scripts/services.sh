#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer on 127.0.0.1 for the integration tests, installing
# (Debian packages) and starting them when they do not. Creates the test database.
# Idempotent; needs root (or sudo) only when something has to be installed or started.
set -euo pipefail
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
# The tests' database: trust auth locally, as on a developer machine; otherwise set PNAS_TEST_PG_URL.
if [[ -z ${PNAS_TEST_PG_URL:-} ]]; then
  if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1" >/dev/null 2>&1; then
    say "PostgreSQL does not let user postgres in over TCP without a password; set PNAS_TEST_PG_URL"; exit 1
  fi
  psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1 from pg_database where datname='pnas_test'" | grep -q 1 \
    || psql -h 127.0.0.1 -U postgres -d postgres -qc "create database pnas_test"
fi
say "PostgreSQL and Redis are up"
