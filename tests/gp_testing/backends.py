"""The telemetry backends for one directory of tests: plain PostgreSQL, the vendored
TimescaleDB build, and the official TimescaleDB image (testcontainers, opt-in)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

# The official image of the vendored build's version, on the embedded server's major.
TIMESCALEDB_IMAGE = "timescale/timescaledb:2.29.2-pg18"
CONTAINERS_ENV = "GRIDPILOT_TEST_CONTAINERS"
BACKENDS = ("plain", "timescaledb", "timescaledb-container")


@dataclass(frozen=True)
class PgServer:
    """A PostgreSQL server the tests may create and drop databases on."""

    admin_url: str
    timescaledb: bool = False  # preloads TimescaleDB: telemetry is a hypertable
    container: bool = False  # runs in Docker: a test cannot start another like it

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


def container_admin_url(host: str, port: int | str, user: str, password: str) -> str:
    """The admin URL of a server in a container: the embedded servers' shape
    (`postgresql://user@host:port/postgres`) with the password the image requires."""
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@"
    netloc += f"[{host}]" if ":" in host else host
    return f"postgresql://{netloc}:{port}/postgres"


def docker_unreachable() -> str | None:
    """Why the Docker daemon testcontainers would use cannot be reached, None when it answers.
    One short API call (no image pull); a missing socket fails at once."""
    try:
        from testcontainers.core.docker_client import DockerClient
    except ImportError as exc:
        return f"testcontainers is not installed ({exc}): pip install -e '.[dev]'"
    try:
        DockerClient(timeout=5).client.ping()
    except Exception as exc:  # docker.errors.DockerException, requests' errors: all say why
        return f"{type(exc).__name__}: {exc}"
    return None


def container_skip_reason(opted_in: str | None, docker_error: str | None) -> str | None:
    """Why the `[timescaledb-container]` backend skips, None when it does not. It runs only
    when `GRIDPILOT_TEST_CONTAINERS=1` asks for it (it pulls the image): a laptop with Docker
    does not rerun the ingest suite by surprise, and CI here (no daemon, no network for
    images) never tries a pull. Asked for, it runs or fails: a job that sets the variable
    must not pass having run nothing."""
    if opted_in == "1":
        return None
    if docker_error is not None:
        return (
            f"Docker daemon not reachable ({docker_error}): the [timescaledb-container] backend "
            f"needs Docker and {CONTAINERS_ENV}=1; the vendored TimescaleDB build "
            "([timescaledb]) covers these tests in CI"
        )
    return (
        f"Docker is reachable but {CONTAINERS_ENV} is not 1: set it to run these tests on "
        f"{TIMESCALEDB_IMAGE} (pulled once); the vendored TimescaleDB build ([timescaledb]) "
        "covers them in CI"
    )


@pytest.fixture(scope="session", params=BACKENDS)
def pg_server_both(request: pytest.FixtureRequest) -> Any:
    """Plain PostgreSQL, TimescaleDB built from the vendored source, then the official
    TimescaleDB image (tests/conftest.py's `pg_server_plain`, `pg_server_timescaledb` and
    `pg_server_timescaledb_container`): a conftest that imports this as `pg_server` runs
    its directory's tests on each; a TimescaleDB one skips, saying why, where it cannot run."""
    return request.getfixturevalue(f"pg_server_{request.param.replace('-', '_')}")
