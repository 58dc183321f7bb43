#!/bin/sh
# Run a server with the TLS files mounted at /certs (read-only, owned by whoever made them):
# copies them to /run/tls, owned by USER with the key at mode 0600 (PostgreSQL refuses a key
# others can read, and a bind-mounted key may not be readable by the server's own user),
# then runs the rest of the command line. Mounted into the stock images, never built in.
#   sh /tls-key.sh USER COMMAND [ARGS...]
set -eu
user=$1
shift
for f in ca.crt server.crt server.key; do
  [ -r "/certs/$f" ] || { echo "tls: /certs/$f is missing: make it with scripts/make-certs.sh and mount the directory" >&2; exit 2; }
done
mkdir -p /run/tls
cp /certs/ca.crt /certs/server.crt /certs/server.key /run/tls/
chown -R "$user" /run/tls
chmod 0644 /run/tls/ca.crt /run/tls/server.crt
chmod 0600 /run/tls/server.key
exec "$@"
