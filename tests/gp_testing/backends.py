"""Both telemetry backends for one directory of tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest


@dataclass(frozen=True)
class PgServer:
    """A PostgreSQL server the tests may create and drop databases on."""

    admin_url: str
    timescaledb: bool = False  # preloads TimescaleDB: telemetry is a hypertable

    def url(self, database: str) -> str:
        """The libpq URL of `database` on this server (same user, host, port and options)."""
        return urlsplit(self.admin_url)._replace(path=f"/{database}").geturl()


@pytest.fixture(scope="session", params=["plain", "timescaledb"])
def pg_server_both(request: pytest.FixtureRequest) -> Any:
    """Plain PostgreSQL, then TimescaleDB (tests/conftest.py's `pg_server_plain` and
    `pg_server_timescaledb`): a conftest that imports this as `pg_server` runs its
    directory's tests on both; the TimescaleDB half skips, saying why, where it cannot run."""
    return request.getfixturevalue(f"pg_server_{request.param}")
