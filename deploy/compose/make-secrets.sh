#!/bin/sh
# Makes the files docker-compose.yml takes its secrets from, in
# deploy/compose/secrets/ (mode 0700; ignored by git): four database
# passwords and a dev CA with the headend's and the simulated gateway's
# certificates (`gridpilot pki`). Existing files are kept, so it is safe to
# run again. Needs `gridpilot` on PATH (pipx install ., or .venv/bin).
# The headend gets the CA's key (pki.json, ca.pem, ca.key) to sign the CSRs
# of gateways that enroll (`gridpilot agent enroll`).
#
# The containers run as uid 10001 and compose bind-mounts each secret file
# as it is, so the files are made readable (0644) inside a directory only
# you can enter (0700). For a real pilot bring your own CA: docs/security.md.
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
chmod 0700 secrets
for name in db-superuser-password db-owner-password db-app-password temporal-db-password grafana-admin-password; do
  if [ ! -s "secrets/$name" ]; then
    python3 -c 'import secrets; print(secrets.token_urlsafe(32), end="")' > "secrets/$name"
  fi
done
if [ ! -f secrets/pki/ca.pem ]; then
  gridpilot pki init --dir secrets/pki --trust-domain gridpilot
fi
if [ ! -f secrets/pki/headend.pem ]; then
  gridpilot pki issue-headend --dir secrets/pki --dns headend --dns localhost --ip 127.0.0.1
fi
if [ ! -f secrets/pki/gateways/sim-gw.pem ]; then
  gridpilot pki issue-gateway sim-gw --site sim-site --dir secrets/pki
fi
# ca.key too: the headend signs enrolling gateways' CSRs with it.
find secrets -type f -exec chmod 0644 {} +
echo "secrets in $(pwd)/secrets"
