"""Row-level security runs on every backend: plain PostgreSQL and TimescaleDB
(where telemetry is a hypertable)."""

from __future__ import annotations

from gp_testing.backends import pg_server_both as pg_server  # noqa: F401 - overrides
