"""`gridpilot dev timescaledb`: says what is missing when it cannot build, and
installs from the per-version cache without building again."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gp_testing.backends import timescaledb_source

from gridpilot.ops.pginstall import PgLayout, installed_timescaledb
from gridpilot.ops.timescale import cache_root, source_version

pytestmark = pytest.mark.integration


def gridpilot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridpilot", "dev", "timescaledb", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=900,
    )


def test_without_build_tools_it_names_what_is_missing_and_changes_nothing(
    tmp_path: Path,
) -> None:
    source = tmp_path / "timescaledb-9.9.9"
    source.mkdir()
    (source / "version.config").write_text("version = 9.9.9\n")
    before = installed_timescaledb()
    run = gridpilot(
        "--source",
        str(source),
        "--cache-dir",
        str(tmp_path / "cache"),
        env={"PATH": str(tmp_path / "empty")},
    )
    assert run.returncode == 1
    assert "cmake, a C compiler, make not found on PATH" in run.stderr
    assert not (tmp_path / "cache" / f"9.9.9-pg{PgLayout.embedded().major}").exists()
    assert installed_timescaledb() == before


def test_a_cached_build_is_installed_without_building_again() -> None:
    source = timescaledb_source()
    if source is None or not source.exists():
        pytest.skip("no TimescaleDB source: set GRIDPILOT_TIMESCALEDB_SOURCE or ../shared/vendor/")
    version = source_version(source)
    first = gridpilot("--source", str(source))  # builds only if this machine never did
    assert first.returncode == 0, first.stderr
    assert (cache_root() / f"{version}-pg{PgLayout.embedded().major}" / "COMPLETE").exists()
    started = time.monotonic()
    again = gridpilot("--source", str(source))
    assert again.returncode == 0, again.stderr
    assert "installed from the cached build" in again.stdout
    assert time.monotonic() - started < 60  # a copy, not an 80 s build
    assert installed_timescaledb() == version
