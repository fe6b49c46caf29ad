"""The benchmark scripts in bench/ still import against today's code (a move in
src/ broke bench/ingest.py once without any test noticing). Running them is
their own job (they print figures; see bench/), not the suite's."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


SCRIPTS = sorted(p for p in BENCH.glob("*.py") if not p.name.startswith("_"))  # _x: shared parts


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bench_script_imports(script: Path) -> None:
    namespace = runpy.run_path(str(script), run_name="bench_import_check")  # not __main__
    assert callable(namespace.get("main")), f"{script.name} has no main()"
