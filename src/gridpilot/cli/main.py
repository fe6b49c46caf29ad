"""``gridpilot``: run the product, its parts, and talk to its API."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from gridpilot.ops.logging import configure_logging
from gridpilot.ops.settings import load_settings
from gridpilot.schema import tenancy

from .agent import agent_app
from .dev import dev_app
from .dispatch import dispatch_app
from .doctor import doctor
from .gateway import gateway_app
from .security import audit_app, pki_app, token_app
from .tenant import tenant_app

app = typer.Typer(
    help="GridPilot: dispatch control plane for distributed energy resources.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema: upgrade and reset.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(agent_app, name="agent")
app.add_typer(dispatch_app, name="dispatch")
app.add_typer(pki_app, name="pki")
app.add_typer(gateway_app, name="gateway")
app.add_typer(token_app, name="token")
app.add_typer(tenant_app, name="tenant")
app.add_typer(audit_app, name="audit")
app.command()(doctor)
app.add_typer(dev_app, name="dev")


@app.callback()
def _system_scope(ctx: typer.Context) -> None:
    # The CLI acts with the database's own credentials, for every tenant
    # (row-level security's system scope, schema/tenancy.py), for as long as
    # its command runs: the scope is reset after it (a command run in-process,
    # as the tests do, leaves no scope behind).
    ctx.with_resource(tenancy.scope(tenancy.SYSTEM))


@app.command()
def headend(
    roles: Annotated[
        str | None, typer.Option(help="comma list of grpc, api, worker (default: all)")
    ] = None,
    api_port: Annotated[int | None, typer.Option(help="REST API port")] = None,
    grpc_listen: Annotated[str | None, typer.Option(help="AgentGateway host:port")] = None,
) -> None:
    """Run a headend: AgentGateway (gRPC), REST API + console, ingest and a Temporal worker.

    Configured by GRIDPILOT_* variables (see .env.example): GRIDPILOT_DATABASE_URL,
    GRIDPILOT_TEMPORAL_ADDRESS, GRIDPILOT_RESET_DB, ...

    Traces (OpenTelemetry, OTLP) are sent when OTEL_EXPORTER_OTLP_ENDPOINT is set
    (docs/tracing.md).
    """
    from gridpilot.ops.headend import HeadendError, serve
    from gridpilot.ops.tracing import SERVICE_HEADEND, TracingConfigError, configure_tracing

    overrides = {
        k: v
        for k, v in {"roles": roles, "api_port": api_port, "grpc_listen": grpc_listen}.items()
        if v is not None
    }
    settings = load_settings(**overrides)
    configure_logging(settings.log_level)
    try:
        tracing = configure_tracing(SERVICE_HEADEND)  # OTEL_* variables; off when unset
        asyncio.run(serve(settings, tracing=tracing))
    except (HeadendError, ConnectionError, TracingConfigError) as exc:
        typer.echo(f"gridpilot headend: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command()
def up(
    data_dir: Annotated[
        Path | None, typer.Option(help="where data lives (default: the user data dir)")
    ] = None,
    api_port: Annotated[int, typer.Option(help="REST API and console port")] = 8080,
    grpc_port: Annotated[int, typer.Option(help="AgentGateway gRPC port")] = 50051,
    temporal_port: Annotated[int, typer.Option(help="Temporal frontend port")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Temporal UI port")] = 8233,
    opcua_port: Annotated[
        int, typer.Option(help="the demo agent's OPC UA server port (for a SCADA client)")
    ] = 4840,
    pg_port: Annotated[int, typer.Option(help="embedded PostgreSQL port (0 = any free)")] = 0,
) -> None:
    """Start the embedded demo: PostgreSQL, Temporal dev server + UI, a headend and a
    simulated site (BESS, PV, EV charger behind one edge agent, with its OPC UA server
    for a local SCADA). Ctrl-C stops it all."""
    from gridpilot.ops.up import UpOptions, run_up

    code = run_up(
        UpOptions(
            data_dir=data_dir,
            api_port=api_port,
            grpc_port=grpc_port,
            temporal_port=temporal_port,
            ui_port=ui_port,
            opcua_port=opcua_port,
            pg_port=pg_port,
        )
    )
    raise typer.Exit(code)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database at GRIDPILOT_DATABASE_URL to the newest schema, as
    the owner of its tables; grants the app role (GRIDPILOT_DB_APP_ROLE) what
    the headend needs, and creates the coming days' telemetry partitions."""
    from gridpilot.schema import db

    settings = load_settings()
    try:
        db.upgrade(settings.database_url, app_role=settings.db_app_role)
    except (PermissionError, ValueError) as exc:
        raise SystemExit(f"gridpilot: {exc}") from None
    db.maintain_partitions(settings.database_url, settings.telemetry_policy)
    backend = db.telemetry_backend(settings.database_url) or "plain PostgreSQL"
    typer.echo(
        f"database at revision {db.current_revision(settings.database_url)} "
        f"(telemetry on {backend})"
    )


@db_app.command("move-to-timescaledb")
def db_move_to_timescaledb() -> None:
    """Move the telemetry of a plain-PostgreSQL database at GRIDPILOT_DATABASE_URL into a
    TimescaleDB hypertable (with its compression, retention and rollups), as the owner, in
    one transaction. Install the extension and preload it first; stop the headends
    meanwhile (agents buffer on disk). See docs/operations.md."""
    from gridpilot.schema import db

    settings = load_settings()
    try:
        moved = db.move_to_timescaledb(
            settings.database_url, settings.telemetry_policy, settings.db_app_role
        )
    except ValueError as exc:
        raise SystemExit(f"gridpilot: {exc}") from None
    typer.echo(f"telemetry on {db.telemetry_backend(settings.database_url)}: {moved} rows moved")


@db_app.command("reset")
def db_reset(
    yes: Annotated[bool, typer.Option("--yes", help="confirm: every row is deleted")] = False,
) -> None:
    """Drop every table and migrate again (dev only; refused in production)."""
    from gridpilot.ops.settings import Environment
    from gridpilot.schema import db

    settings = load_settings()
    if settings.environment is Environment.PRODUCTION:
        typer.echo("gridpilot db reset: refused in production (GRIDPILOT_ENVIRONMENT)", err=True)
        raise typer.Exit(2)
    if not yes:
        typer.echo("gridpilot db reset: this deletes every row; pass --yes to confirm", err=True)
        raise typer.Exit(2)
    db.reset(settings.database_url)
    typer.echo("database reset")


if __name__ == "__main__":
    app()
