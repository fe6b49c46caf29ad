"""Both telemetry backends for one directory of tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
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


def timescaledb_source() -> Path | None:
    """`GRIDPILOT_TIMESCALEDB_SOURCE`, else the newest `timescaledb-*.tar.gz` in a
    `shared/vendor/` beside the repository (or beside one of its parents)."""
    given = os.environ.get("GRIDPILOT_TIMESCALEDB_SOURCE")
    if given:
        return Path(given)
    repo = Path(__file__).resolve().parents[2]
    for parent in repo.parents:
        found = sorted((parent / "shared" / "vendor").glob("timescaledb-*.tar.gz"))
        if found:
            return found[-1]
    return None


@pytest.fixture(scope="session", params=["plain", "timescaledb"])
def pg_server_both(request: pytest.FixtureRequest) -> Any:
    """Plain PostgreSQL, then TimescaleDB (tests/conftest.py's `pg_server_plain` and
    `pg_server_timescaledb`): a conftest that imports this as `pg_server` runs its
    directory's tests on both; the TimescaleDB half skips, saying why, where it cannot run."""
    return request.getfixturevalue(f"pg_server_{request.param}")
