"""``gridpilot dev``: developer tooling for the embedded stack."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

dev_app = typer.Typer(help="Developer tooling for the embedded stack.", no_args_is_help=True)


@dev_app.command("timescaledb")
def timescaledb(
    source: Annotated[
        Path,
        typer.Option(
            envvar="GRIDPILOT_TIMESCALEDB_SOURCE",
            help="TimescaleDB source: a release tarball (timescaledb-X.Y.Z.tar.gz) or its "
            "unpacked directory (the tests build from the same variable)",
        ),
    ],
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            help="where builds are kept, one per TimescaleDB and PostgreSQL version "
            "(default: <user cache>/gridpilot/timescaledb)"
        ),
    ] = None,
    jobs: Annotated[int | None, typer.Option(min=1, help="parallel make jobs (default: CPUs)")] = (
        None
    ),
) -> None:
    """Install TimescaleDB into the embedded PostgreSQL (`gridpilot up` then runs on it).

    Builds the source with cmake, a C compiler and make against the embedded server's
    pg_config, once per machine: the build is cached by TimescaleDB and PostgreSQL version,
    and a later install of the same versions only copies it. Nothing is downloaded.
    """
    from gridpilot.ops.timescale import TimescaleInstallError, cache_root, install, source_version

    try:
        version = source_version(source.expanduser())
        typer.echo(f"TimescaleDB {version} from {source} (cache: {cache_dir or cache_root()})")
        result = install(source, cache=cache_dir, jobs=jobs)
    except TimescaleInstallError as exc:
        typer.echo(f"gridpilot dev timescaledb: {exc}", err=True)
        raise typer.Exit(1) from None
    how = "built and installed" if result.built else "installed from the cached build"
    typer.echo(
        f"TimescaleDB {result.version} {how} ({result.cache_dir}); "
        "`gridpilot up` now runs on it (restart a running stack)"
    )
