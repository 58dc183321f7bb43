# PgBouncer (Debian's package) in transaction mode in front of PostgreSQL: many worker
# connections share a small pool of server connections. No configuration or secret is built in:
# docker/pgbouncer-entrypoint.sh writes pgbouncer.ini from the environment at start, and the
# TLS files come from a mounted directory (/certs).
#   docker build -f docker/pgbouncer.Dockerfile -t pnas-pgbouncer .
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbouncer >/dev/null \
 && rm -rf /var/lib/apt/lists/*
COPY docker/pgbouncer-entrypoint.sh /usr/local/bin/pgbouncer-entrypoint
ENTRYPOINT ["sh", "/usr/local/bin/pgbouncer-entrypoint"]
