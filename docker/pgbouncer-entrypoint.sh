#!/bin/sh
# Writes pgbouncer.ini and the user list from the environment, then runs PgBouncer as the
# postgres user. Transaction pooling: the store holds no connection-level state across
# transactions (no prepared statements, session SET or advisory locks), so any server
# connection can serve any client's next transaction.
#   POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB   the one application role and database
#   PGBOUNCER_DB_HOST (db), PGBOUNCER_DB_PORT (5432)  where PostgreSQL is
#   PGBOUNCER_PORT (6432), PGBOUNCER_LISTEN (*)       where PgBouncer listens
#   PGBOUNCER_POOL_SIZE (20)   server connections: about 2-4 per PostgreSQL core is plenty
#   PGBOUNCER_MAX_CLIENTS (2000)  worker connections accepted
# TLS when /certs/server.key exists: clients must use TLS (they check the certificate with
# sslmode=verify-full), and PgBouncer checks PostgreSQL's certificate the same way.
set -eu
: "${POSTGRES_USER:?set POSTGRES_USER}" "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
db=${POSTGRES_DB:-$POSTGRES_USER}
dir=/run/pgbouncer
mkdir -p "$dir"
umask 077
printf '"%s" "%s"\n' "$POSTGRES_USER" "$POSTGRES_PASSWORD" > "$dir/users.txt"
cat > "$dir/pgbouncer.ini" <<INI
[databases]
$db = host=${PGBOUNCER_DB_HOST:-db} port=${PGBOUNCER_DB_PORT:-5432} dbname=$db
[pgbouncer]
listen_addr = ${PGBOUNCER_LISTEN:-*}
listen_port = ${PGBOUNCER_PORT:-6432}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/users.txt
admin_users = $POSTGRES_USER
pool_mode = transaction
default_pool_size = ${PGBOUNCER_POOL_SIZE:-20}
max_db_connections = ${PGBOUNCER_POOL_SIZE:-20}
max_client_conn = ${PGBOUNCER_MAX_CLIENTS:-2000}
server_reset_query =
ignore_startup_parameters = extra_float_digits
INI
if [ -r /certs/server.key ]; then
  cp /certs/ca.crt /certs/server.crt /certs/server.key "$dir/"
  cat >> "$dir/pgbouncer.ini" <<INI
client_tls_sslmode = require
client_tls_key_file = $dir/server.key
client_tls_cert_file = $dir/server.crt
client_tls_ca_file = $dir/ca.crt
server_tls_sslmode = verify-full
server_tls_ca_file = $dir/ca.crt
INI
fi
chown -R postgres "$dir"
exec runuser -u postgres -- pgbouncer "$dir/pgbouncer.ini"
