#!/bin/sh
# First start of the TimescaleDB container only (docker-entrypoint-initdb.d):
# the owner of GridPilot's tables (runs `gridpilot db upgrade`) and the app
# role the headend logs in as (SELECT/INSERT only on the audit log once the
# migrations grant it; docs/security.md, "Database roles"). Passwords come
# from the compose secrets.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v owner_pw="$(cat /run/secrets/db_owner_password)" \
  -v app_pw="$(cat /run/secrets/db_app_password)" <<'SQL'
CREATE ROLE gridpilot_owner LOGIN PASSWORD :'owner_pw' NOSUPERUSER;
CREATE ROLE gridpilot_app LOGIN PASSWORD :'app_pw' NOSUPERUSER NOBYPASSRLS;
ALTER DATABASE gridpilot OWNER TO gridpilot_owner;
ALTER SCHEMA public OWNER TO gridpilot_owner;
SQL
