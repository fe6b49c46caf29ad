"""`gridpilot headend` when what it needs is not there: one line naming the
setting and what was tried, never a traceback or a long silence."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from gridpilot.ops.processes import free_port

pytestmark = pytest.mark.integration


def headend(**env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "gridpilot", "headend", "--api-port", str(free_port())],
        env={
            **os.environ,
            "GRIDPILOT_GRPC_INSECURE": "true",
            "GRIDPILOT_GRPC_LISTEN": f"127.0.0.1:{free_port()}",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    return r, time.monotonic() - started


def test_an_unreachable_database_is_one_line_naming_the_setting() -> None:
    port = free_port()
    r, _ = headend(GRIDPILOT_DATABASE_URL=f"postgresql://gp:secret@127.0.0.1:{port}/gridpilot")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr + r.stdout
    assert r.stderr.strip().splitlines() == [
        f"gridpilot headend: cannot use the database at GRIDPILOT_DATABASE_URL="
        f'…@127.0.0.1:{port}/gridpilot: connection failed: connection to server at "127.0.0.1", '
        f"port {port} failed: Connection refused"
    ]
    assert "secret" not in r.stderr + r.stdout


def test_an_unreachable_temporal_says_so_on_every_try_then_in_one_line(
    database_url: str,
) -> None:
    address = f"127.0.0.1:{free_port()}"
    r, took = headend(
        GRIDPILOT_DATABASE_URL=database_url,
        GRIDPILOT_TEMPORAL_ADDRESS=address,
        GRIDPILOT_TEMPORAL_CONNECT_TIMEOUT_S="4",
    )
    assert r.returncode == 1
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.strip().splitlines()
    tries = [line for line in lines if "temporal_unreachable" in line]
    assert len(tries) >= 2, r.stderr
    assert all(
        "GRIDPILOT_TEMPORAL_ADDRESS" in t and address in t and "Connection refused" in t
        for t in tries
    ), tries
    assert lines[-1:] == [
        f"gridpilot headend: Temporal is not reachable at GRIDPILOT_TEMPORAL_ADDRESS={address} "
        f"(namespace default): Connection refused; tried {len(tries) + 1} times in 4 s"
    ]
    assert took < 60  # the setting bounds the wait, not a fixed minute
