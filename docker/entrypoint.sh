#!/bin/sh
# The container's entrypoint: `twin serve` applies the database migrations, then serves the web
# app (a failed migration stops it with a message, before anything listens).
# Extra arguments go to `twin serve` (e.g. --port 9000).
set -eu
# Everything twin writes into the data volume is for the owner only.
umask 077
exec twin serve "$@"
