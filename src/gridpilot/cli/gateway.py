"""``gridpilot gateway``: site enrollment, on the database at GRIDPILOT_DATABASE_URL.

A gateway's Hello for a site is accepted only when the gateway is enrolled for
it (or its certificate names it: ``gridpilot pki issue-gateway --site``).
Assets it declares for the first time beyond ``--max-asset-kw`` are held until
``gridpilot gateway approve``. Every change is audited as ``cli:<os user>``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from gridpilot.ingest.enrollment import EnrollmentStore
from gridpilot.ops.settings import load_settings
from gridpilot.security.audit import AuditLog
from gridpilot.security.enroll_tokens import MAX_TTL_S, MIN_TTL_S, EnrollmentTokens
from gridpilot.security.identity import check_gateway_id, check_site_id

from .security import _fail, _with_db, cli_actor

gateway_app = typer.Typer(
    help="Site enrollment: which gateways may speak for a site, one-time enrollment "
    "tokens for new gateways, approval of held assets.",
    no_args_is_help=True,
)

SiteOpt = Annotated[str, typer.Option("--site", help="the site id")]


def _ids(site_id: str | None, gateway_id: str | None) -> None:
    try:
        if site_id is not None:
            check_site_id(site_id)
        if gateway_id is not None:
            check_gateway_id(gateway_id)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None


def _store(audit: AuditLog) -> EnrollmentStore:
    return EnrollmentStore(audit.engine, audit)


def _line(e: dict[str, Any]) -> str:
    bound = "none (every new asset held)" if e["max_asset_kw"] is None else f"{e['max_asset_kw']:g}"
    return (
        f"{e['site_id']:<16} {e['gateway_id']:<16} max_asset_kw {bound:<8} "
        f"enrolled {e['enrolled_at']:%Y-%m-%d %H:%M} by {e['enrolled_by']}"
    )


@gateway_app.command("enroll")
def enroll(
    gateway_id: Annotated[str, typer.Argument(help="the gateway id (its certificate's)")],
    site: SiteOpt,
    max_asset_kw: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=1_000_000,
            help="assets it declares for the first time beyond this many kW (|p_min|, |p_max|) "
            "are held for approval; unset: every new asset is held",
        ),
    ] = None,
) -> None:
    """Enroll a gateway for a site (again: replaces its --max-asset-kw)."""
    _ids(site, gateway_id)

    async def work(audit: AuditLog) -> dict[str, Any]:
        return await _store(audit).enroll(site, gateway_id, max_asset_kw, cli_actor())

    typer.echo(f"enrolled: {_line(_with_db(work))}")


@gateway_app.command("list")
def list_(
    site: Annotated[str | None, typer.Option("--site", help="only this site")] = None,
) -> None:
    """List enrollments: site, gateway, max_asset_kw, when and by whom."""
    _ids(site, None)

    async def work(audit: AuditLog) -> list[dict[str, Any]]:
        return await _store(audit).list_enrollments(site_id=site)

    rows = _with_db(work)
    if not rows:
        typer.echo("no gateway is enrolled" + (f" for site {site}" if site else ""), err=True)
    for e in rows:
        typer.echo(_line(e))


@gateway_app.command("remove")
def remove(
    gateway_id: Annotated[str, typer.Argument(help="the gateway id")],
    site: SiteOpt,
) -> None:
    """Withdraw an enrollment: the gateway's next Hello for the site is refused."""
    _ids(site, gateway_id)

    async def work(audit: AuditLog) -> None:
        await _store(audit).remove(site, gateway_id, cli_actor())

    _with_db(work)
    typer.echo(f"gateway {gateway_id} is no longer enrolled for site {site}")


@gateway_app.command("held")
def held(site: SiteOpt) -> None:
    """Assets of a site held for approval (not dispatched to or counted)."""
    _ids(site, None)

    async def work(audit: AuditLog) -> list[dict[str, Any]]:
        return await _store(audit).held(site)

    rows = _with_db(work)
    if not rows:
        typer.echo(f"no asset of site {site} is held", err=True)
    for a in rows:
        typer.echo(
            f"{a['id']:<16} {a['asset_type']:<12} {a['p_min_kw']:g} … {a['p_max_kw']:g} kW  "
            f"gateway {a['gateway_id']}: {a['held_reason']}"
        )


@gateway_app.command("approve")
def approve(
    asset_id: Annotated[str, typer.Argument(help="the held asset's id")],
    reason: Annotated[str, typer.Option(help="why (kept in the audit log)")] = "",
) -> None:
    """Approve a held asset: it is dispatched to and counted from now on."""

    async def work(audit: AuditLog) -> dict[str, Any]:
        return await _store(audit).approve(asset_id, cli_actor(), reason)

    a = _with_db(work)
    typer.echo(f"asset {a['id']} approved ({a['p_min_kw']:g} … {a['p_max_kw']:g} kW)")


@gateway_app.command("token")
def token(
    gateway_id: Annotated[str, typer.Argument(help="the gateway the token enrolls")],
    site: SiteOpt,
    ttl_s: Annotated[
        int | None,
        typer.Option(
            min=MIN_TTL_S,
            max=MAX_TTL_S,
            help="lifetime in seconds (default: GRIDPILOT_ENROLL_TOKEN_TTL_S, 3600)",
        ),
    ] = None,
    max_asset_kw: Annotated[
        float | None,
        typer.Option(min=0, max=1_000_000, help="the enrollment's bound (see `gateway enroll`)"),
    ] = None,
) -> None:
    """Issue a one-time enrollment token for a gateway and site; print it once.
    On the gateway: `gridpilot agent enroll --headend URL --token TOKEN`."""
    _ids(site, gateway_id)
    ttl = ttl_s or load_settings().enroll_token_ttl_s

    async def work(audit: AuditLog) -> tuple[dict[str, Any], str]:
        tokens = EnrollmentTokens(audit.engine, audit)
        return await tokens.create(gateway_id, site, cli_actor(), ttl, max_asset_kw)

    info, secret = _with_db(work)
    typer.echo(secret)
    typer.echo(
        f"enrollment token {info['id']} for gateway {gateway_id}, site {site}; single use, "
        f"expires {info['expires_at']:%Y-%m-%d %H:%M %Z}; shown once",
        err=True,
    )
