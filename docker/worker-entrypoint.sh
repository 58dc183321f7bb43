#!/bin/sh
# `pnas worker` with a Celery node name unique per container. Under host networking every
# replica shares the host's hostname and each runs as the same pid in its own namespace, so
# the default name (pnas-<device>-<pid>@<hostname>) would clash: name it after the container
# id, which is also what `docker ps` / `docker kill` take. Extra arguments go to `pnas worker`.
set -eu
cid=$(sed -n 's#.*/containers/\([0-9a-f]\{12\}\)[0-9a-f]\{52\}/hostname .*#\1#p' /proc/self/mountinfo | head -n 1)
exec pnas worker --name "pnas-${cid:-$(hostname)}@$(hostname)" "$@"
