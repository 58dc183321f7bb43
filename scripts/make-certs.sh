#!/usr/bin/env bash
# A private certificate authority and one server certificate for a first multi-host deployment
# (PgBouncer, PostgreSQL and Redis on the head host present it; every client checks it against
# ca.crt: sslmode=verify-full, rediss:// with ssl_cert_reqs=required).
#
#   scripts/make-certs.sh DIR NAME [NAME...]   # NAME: every DNS name or IP the head is reached by
#   scripts/make-certs.sh ./certs head.example.org 10.0.0.5
#
# Writes DIR/ca.crt (give it to every host), DIR/ca.key (keep it offline: it signs),
# DIR/server.crt and DIR/server.key (the head only). localhost, 127.0.0.1 and the compose
# service names (db, pgbouncer, redis) are always included. Existing files are kept: delete
# them to make new ones. The files are mounted into the containers, never built into images.
set -euo pipefail
[[ $# -ge 1 ]] || { echo "usage: $0 DIR [NAME...]  (NAME: the head host's DNS names and IPs)" >&2; exit 2; }
dir=$1; shift
command -v openssl >/dev/null || { echo "make-certs: openssl is missing (apt-get install openssl)" >&2; exit 2; }
mkdir -p "$dir"
umask 077
days=${PNAS_CERT_DAYS:-825}
if [[ ! -f $dir/ca.key ]]; then
  openssl req -x509 -newkey rsa:3072 -sha256 -nodes -days "$days" -subj "/CN=pnas private CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
if [[ ! -f $dir/server.key ]]; then
  san="DNS:localhost,IP:127.0.0.1,DNS:db,DNS:pgbouncer,DNS:redis"
  for n in "$@"; do
    if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then san+=",IP:$n"; else san+=",DNS:$n"; fi
  done
  openssl req -newkey rsa:3072 -sha256 -nodes -subj "/CN=${1:-localhost}" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$san" > "$dir/server.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days "$days" -sha256 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
  rm -f "$dir/server.csr" "$dir/server.ext"
fi
chmod 644 "$dir/ca.crt" "$dir/server.crt"
chmod 600 "$dir/ca.key" "$dir/server.key"
echo "make-certs: $dir/ca.crt (every host), $dir/server.crt + $dir/server.key (the head), $dir/ca.key (keep offline)" >&2
