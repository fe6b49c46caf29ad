"""The test backends' pure parts: the container backend's URL and when it runs or skips."""

from __future__ import annotations

import psycopg
import pytest
from gp_testing import backends
from gp_testing.backends import (
    CONTAINERS_ENV,
    TIMESCALEDB_IMAGE,
    PgServer,
    container_admin_url,
    container_skip_reason,
)


def test_the_container_url_has_the_embedded_shape_and_each_database_keeps_its_credentials() -> None:
    admin = container_admin_url("localhost", 49153, "postgres", "p@ss/w:rd")
    assert admin == "postgresql://postgres:p%40ss%2Fw%3Ard@localhost:49153/postgres"
    one = PgServer(admin, timescaledb=True, container=True).url("gp_test_ab12")
    assert one == "postgresql://postgres:p%40ss%2Fw%3Ard@localhost:49153/gp_test_ab12"
    params = psycopg.conninfo.conninfo_to_dict(one)
    assert params == {
        "user": "postgres",
        "password": "p@ss/w:rd",
        "host": "localhost",
        "port": "49153",
        "dbname": "gp_test_ab12",
    }


def test_an_ipv6_docker_host_is_bracketed() -> None:
    url = container_admin_url("::1", 5432, "postgres", "x")
    assert url == "postgresql://postgres:x@[::1]:5432/postgres"


def test_without_docker_it_skips_saying_so_and_naming_the_vendored_build() -> None:
    reason = container_skip_reason(None, "DockerException: connection refused")
    assert reason is not None
    assert reason.startswith("Docker daemon not reachable (DockerException: connection refused)")
    assert f"{CONTAINERS_ENV}=1" in reason
    assert "vendored TimescaleDB build" in reason


def test_with_docker_but_not_asked_for_it_skips_naming_the_variable_and_the_image() -> None:
    reason = container_skip_reason("0", None)
    assert reason is not None
    assert f"{CONTAINERS_ENV} is not 1" in reason
    assert TIMESCALEDB_IMAGE in reason


def test_asked_for_it_never_skips() -> None:
    # with Docker it runs; without, the fixture fails rather than pass having run nothing
    assert container_skip_reason("1", None) is None
    assert container_skip_reason("1", "DockerException: no socket") is None


def test_the_image_is_the_vendored_version_on_the_embedded_major() -> None:
    source = backends.timescaledb_source()
    if source is None:
        pytest.skip("no vendored TimescaleDB source beside the clone to compare with")
    from gridpilot.ops.pginstall import PgLayout

    version = source.name.removeprefix("timescaledb-").removesuffix(".tar.gz")
    major = PgLayout.embedded().major  # runs the wheel's pg_config: milliseconds
    assert TIMESCALEDB_IMAGE == f"timescale/timescaledb:{version}-pg{major}"


def test_docker_unreachable_says_why_fast_without_a_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    reason = backends.docker_unreachable()
    assert reason is not None
    assert "DockerException" in reason
