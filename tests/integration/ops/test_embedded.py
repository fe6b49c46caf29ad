"""The embedded dev stack's process management, against the real servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import psycopg
import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

from gridpilot.ops.embedded import (
    EmbeddedPostgres,
    EmbeddedStackError,
    TemporalDevServer,
    stack_lock,
)
from gridpilot.ops.processes import free_port

pytestmark = pytest.mark.integration


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains `text` (zombies have none)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                pids.append(int(entry.name))
    return pids


def test_postgres_reuses_its_data_dir_across_restarts_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    pg = EmbeddedPostgres(data_dir, free_port())
    with pg:
        assert pg.url().startswith("postgresql://postgres@127.0.0.1:")
        with psycopg.connect(pg.url(), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int)")
            conn.execute("INSERT INTO kept VALUES (42)")
        # A second handle on the running server (as after a killed `up`) adopts it.
        adopted = EmbeddedPostgres(data_dir, pg.port)
        adopted.start()
        assert adopted.pid == pg.pid

    assert pg.pid is None
    assert processes_mentioning(str(data_dir)) == []
    pg.stop()  # idempotent

    restarted = EmbeddedPostgres(data_dir, free_port())
    with restarted, psycopg.connect(restarted.url()) as conn:
        assert conn.execute("SELECT x FROM kept").fetchall() == [(42,)]
    assert processes_mentioning(str(data_dir)) == []


def test_postgres_start_failure_reports_the_server_log(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        pg = EmbeddedPostgres(tmp_path / "pg", taken.getsockname()[1])
        with pytest.raises(EmbeddedStackError, match="could not bind|could not create listen"):
            pg.start(timeout=10)
    assert pg.pid is None


def test_stopping_a_never_started_postgres_is_a_no_op(tmp_path: Path) -> None:
    EmbeddedPostgres(tmp_path / "never", free_port()).stop()


async def test_temporal_dev_server_registers_search_attributes_and_stops(tmp_path: Path) -> None:
    server = TemporalDevServer(
        port=free_port(),
        ui_port=free_port(),
        db_file=tmp_path / "temporal.db",
        search_attributes={"DispatchState": "Keyword"},
        log_file=tmp_path / "temporal.log",
    )
    server.start()
    try:
        await server.wait_ready()
        pid = server.pid
        assert pid is not None
        client = await Client.connect(server.address)
        response = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace="default")
        )
        keyword = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
        assert response.custom_attributes["DispatchState"] == keyword
        assert server.ui_url is not None
        with urllib.request.urlopen(server.ui_url, timeout=5) as page:  # noqa: ASYNC210
            assert page.status == 200
    finally:
        server.stop()
    assert server.pid is None
    assert processes_mentioning(f"--port {server.port}") == []
    server.stop()  # idempotent


def test_temporal_dev_server_refuses_a_taken_port() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        server = TemporalDevServer(port=taken.getsockname()[1], ui_port=None)
        with pytest.raises(EmbeddedStackError, match="already in use"):
            server.start()


def test_stack_lock_refuses_a_second_holder_until_the_first_dies(tmp_path: Path) -> None:
    holder_code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from gridpilot.ops.embedded import stack_lock\n"
        "with stack_lock(Path(sys.argv[1])):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(60)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", holder_code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(EmbeddedStackError, match=f"pid {holder.pid}"), stack_lock(tmp_path):
            pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    with stack_lock(tmp_path):
        assert (tmp_path / "gridpilot.lock").read_text().strip() == str(os.getpid())


seen_databases: list[str] = []


@pytest.mark.parametrize("run", [1, 2])
def test_each_test_gets_its_own_empty_database(database_url: str, run: int) -> None:
    with psycopg.connect(database_url) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables.fetchone() == (0,)
        conn.execute("CREATE TABLE mine (x int)")
    assert name is not None and name[0].startswith("gp_test_")
    assert name[0] not in seen_databases
    seen_databases.append(name[0])


async def test_temporal_env_knows_the_dispatch_search_attributes(
    temporal_client: Client, task_queue: str
) -> None:
    response = await temporal_client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    assert {"DispatchState", "AssetId", "SiteId", "DispatchKind"} <= set(response.custom_attributes)
    assert task_queue.startswith("tq-")
