"""The ingest tests run on every backend: plain PostgreSQL and TimescaleDB (two ways)."""

from __future__ import annotations

from gp_testing.backends import pg_server_both as pg_server  # noqa: F401 - overrides
