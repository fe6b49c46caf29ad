#!/bin/sh
# Entry point of the GridPilot images: `gridpilot "$@"`.
# PGPASSWORD_FILE names a file (a Docker or Kubernetes secret) holding the
# database password; it becomes PGPASSWORD, which libpq reads, so the password
# is in neither the compose file, the manifests nor GRIDPILOT_DATABASE_URL.
set -eu
if [ -n "${PGPASSWORD_FILE:-}" ]; then
  PGPASSWORD=$(cat "$PGPASSWORD_FILE")
  export PGPASSWORD
fi
exec gridpilot "$@"
