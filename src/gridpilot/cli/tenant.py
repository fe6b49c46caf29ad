"""``gridpilot tenant``: create, list, suspend and resume tenants, straight in
the database (as the platform admin's REST routes do; audited alike)."""

from __future__ import annotations

from typing import Annotated

import typer

from gridpilot.security.audit import AuditLog
from gridpilot.security.tenants import TenantInfo, TenantStore

from .security import _with_db, cli_actor

tenant_app = typer.Typer(
    help="Tenants: who owns sites, gateways, assets, dispatches and tokens.",
    no_args_is_help=True,
)


def _line(t: TenantInfo) -> str:
    state = (
        f"SUSPENDED {t.suspended_at:%Y-%m-%d %H:%M} by {t.suspended_by}"
        if t.suspended_at
        else "active"
    )
    return f"{t.id:<20} {t.name:<30} {state}  created {t.created_at:%Y-%m-%d}"


@tenant_app.command("create")
def tenant_create(
    tenant_id: Annotated[str, typer.Argument(help="1-63 lower-case letters, digits or '-'")],
    name: Annotated[str, typer.Option(help="a human name")],
) -> None:
    """Create a tenant; then its first admin token:
    gridpilot token create --tenant ID --role admin --name ..."""

    async def work(audit: AuditLog) -> TenantInfo:
        return await TenantStore(audit.engine, audit).create(tenant_id, name, cli_actor())

    typer.echo(_line(_with_db(work)))


@tenant_app.command("list")
def tenant_list() -> None:
    """Every tenant: id, name, active or suspended."""

    async def work(audit: AuditLog) -> list[TenantInfo]:
        return await TenantStore(audit.engine, audit).list()

    for t in _with_db(work):
        typer.echo(_line(t))


def _set(tenant_id: str, suspended: bool) -> None:
    async def work(audit: AuditLog) -> TenantInfo:
        return await TenantStore(audit.engine, audit).set_suspended(
            tenant_id, suspended, cli_actor()
        )

    typer.echo(_line(_with_db(work)))


@tenant_app.command("suspend")
def tenant_suspend(tenant_id: Annotated[str, typer.Argument(help="the tenant")]) -> None:
    """Refuse the tenant's tokens and OIDC principals (401) and its gateways
    (live streams end, new ones are refused); its data stays. Undo with
    `gridpilot tenant resume`."""
    _set(tenant_id, True)


@tenant_app.command("resume")
def tenant_resume(tenant_id: Annotated[str, typer.Argument(help="the tenant")]) -> None:
    """Accept the tenant's principals and gateways again."""
    _set(tenant_id, False)
