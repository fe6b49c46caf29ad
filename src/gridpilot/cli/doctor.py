"""``gridpilot doctor``: the deployment's health, and why a site has no data
or a dispatch was not applied, on one screen (``ops.doctor``, ``ops.diagnose``)."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Annotated, Any

import typer

from gridpilot.ops.settings import Settings, load_settings

from .dispatch import timeline
from .endpoint import default_up_json, read_up_json

MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}


def _settings() -> Settings:
    """GRIDPILOT_* variables; without GRIDPILOT_DATABASE_URL, the local running
    `gridpilot up`'s database and Temporal (its up.json)."""
    if "GRIDPILOT_DATABASE_URL" in os.environ:
        return load_settings()
    info = read_up_json(default_up_json()) or {}
    found = {
        key: info[key]
        for key in ("database_url", "temporal_address")
        if isinstance(info.get(key), str)
    }
    return load_settings(**found)


async def _run(
    settings: Settings, site: str | None, asset: str | None, dispatch: str | None
) -> tuple[Any, dict[str, Any]]:
    from gridpilot.ops import diagnose
    from gridpilot.ops.doctor import Deployment, Report, check_deployment
    from gridpilot.schema import db

    subject = (
        (f"site {site}" if site else f"asset {asset}" if asset else f"dispatch {dispatch}")
        if (site or asset or dispatch)
        else "deployment"
    )
    report = Report(subject)
    dep = Deployment(settings, db.async_engine(settings.database_url, pool_size=2))
    detail: dict[str, Any] = {}
    try:
        await check_deployment(dep, report)
        if dep.db_ok:
            if site:
                await diagnose.diagnose_site(dep, report, site)
            elif asset:
                await diagnose.diagnose_asset(dep, report, asset)
            elif dispatch:
                detail = await diagnose.diagnose_dispatch(dep, report, dispatch)
    finally:
        await dep.engine.dispose()
    return report, detail


def doctor(
    site: Annotated[str | None, typer.Option(help="why has this site no (fresh) data?")] = None,
    asset: Annotated[str | None, typer.Option(help="why has this asset no (fresh) data?")] = None,
    dispatch: Annotated[
        str | None, typer.Option(help="why was this dispatch not applied? (its id)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the findings as JSON")] = False,
) -> None:
    """Check the deployment (database, migrations, Temporal, search attributes,
    workers, certificates, clock skew) and, with --site, --asset or --dispatch,
    say why there is no data or why a dispatch was not applied, and what to do
    next. Exit code 1 when something is wrong.

    Reads GRIDPILOT_DATABASE_URL and GRIDPILOT_TEMPORAL_ADDRESS (else the local
    running `gridpilot up`'s), like the headend.
    """
    if sum(x is not None for x in (site, asset, dispatch)) > 1:
        typer.echo("gridpilot doctor: give one of --site, --asset, --dispatch", err=True)
        raise typer.Exit(2)
    report, detail = asyncio.run(_run(_settings(), site, asset, dispatch))
    if detail:
        report.timeline = timeline(detail)
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2, default=str))
    else:
        typer.echo(f"gridpilot doctor: {report.subject}")
        for f in report.findings:
            typer.echo(f"  {MARK[f.status.value]}  {f.check:<18} {f.detail}")
        if report.timeline:
            typer.echo(report.timeline)
        typer.echo(f"next: {report.next_step}")
    raise typer.Exit(0 if report.ok else 1)
