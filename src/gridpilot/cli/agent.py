"""``gridpilot agent``: run the edge agent for one site, or check its config."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
import sys
from pathlib import Path

import structlog
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from gridpilot.edge_agent import ConfigError, EdgeAgent, SiteConfig, load_config
from gridpilot.edge_agent.adapters import quiet_protocol_loggers
from gridpilot.edge_agent.runtime import buffer_path
from gridpilot.edge_agent.telemetry.buffer_sqlite import BufferLocked
from gridpilot.ops.logging import add_trace_ids
from gridpilot.ops.tracing import SERVICE_AGENT, TracingConfigError, configure_tracing

from .agent_enroll import enroll_cmd, renew_cmd
from .agent_probe import check_connect, make_opcua_certificate, write_schema

agent_app = typer.Typer(
    help=(
        "The edge agent: one per site, it speaks for all the site's assets over one "
        "outbound gRPC stream to the headend.\n\n"
        "Run it with --config site.yaml; validate a config with 'check'; get its "
        "certificate with 'enroll' (and later 'renew').\n\n"
        "Traces (OpenTelemetry, OTLP) are sent when OTEL_EXPORTER_OTLP_ENDPOINT is set "
        "(docs/tracing.md)."
    ),
    no_args_is_help=False,
)

EXIT_CONFIG = 2


@agent_app.callback(invoke_without_command=True)
def agent(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="Site YAML: gateway, headend address, assets, devices, limits.",
        metavar="SITE.yaml",
    ),
    headend: str | None = typer.Option(
        None,
        "--headend",
        help="Headend gRPC address (host:port, or several separated by commas: the "
        "first, then failovers); overrides headend.address and failover_addresses.",
        metavar="HOST:PORT",
    ),
    log_level: str = typer.Option(
        "info", "--log-level", help="debug, info, warning or error.", metavar="LEVEL"
    ),
    state_dir: Path | None = typer.Option(
        None,
        "--state-dir",
        help="Where the telemetry buffer (and, in the same file, the journal of "
        "held leases) lives unless the config sets buffer.path "
        "(default: the config file's directory).",
        metavar="DIR",
    ),
) -> None:
    """Run the agent until SIGINT/SIGTERM: it connects out to the headend,
    streams telemetry, and applies dispatches within the config's limits."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        raise typer.BadParameter(
            "give the site config, e.g. 'gridpilot agent --config site.yaml'",
            param_hint="--config",
        )
    cfg = _load_or_exit(config)
    if headend is not None:
        cfg = _with_headend(cfg, headend)
    _configure_logging(log_level)
    try:
        configure_tracing(SERVICE_AGENT)  # OTEL_* variables; off when unset
    except TracingConfigError as exc:
        typer.echo(f"gridpilot agent: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    asyncio.run(_run(cfg, state_dir or config.resolve().parent))


@agent_app.command("check")
def check(
    config: Path = typer.Argument(..., help="Site YAML to validate.", metavar="SITE.yaml"),
    connect: bool = typer.Option(
        False, "--connect", help="Also read every device once and print its normalized values."
    ),
    timeout: float = typer.Option(
        10.0, "--timeout", help="Per device, with --connect.", metavar="SECONDS"
    ),
) -> None:
    """Validate a site config and show its assets; on errors, list each as
    file:line: field: message and exit with code 2. With --connect, exit 1
    when a device cannot be read."""
    cfg = _load_or_exit(config)
    console = Console()
    table = Table(
        title=f"{cfg.site.id} ({cfg.site.name or 'unnamed'}) via gateway {cfg.gateway_id}"
    )
    table.add_column("asset", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("limits kW", justify="right", no_wrap=True)
    table.add_column("default kW", justify="right", no_wrap=True)
    table.add_column("kWh", justify="right")
    table.add_column("device", no_wrap=True)
    table.add_column("name")
    for asset in cfg.assets:
        capacity = getattr(asset, "capacity_kwh", None)
        table.add_row(
            asset.id,
            asset.type,
            f"{asset.limits.p_min_kw:g} … {asset.limits.p_max_kw:g}",
            f"{asset.default_p_kw:g}",
            f"{capacity:g}" if capacity else "",
            asset.device.kind,
            asset.name,
        )
    console.print(table)
    security = "insecure (no TLS)" if cfg.headend.insecure else "mutual TLS"
    console.print(
        f"{config}: OK. headend {', '.join(cfg.headend.addresses)}, {security}; telemetry every "
        f"{cfg.telemetry_interval_s:g} s; fail-safe after {cfg.failsafe_timeout_s:g} s",
        markup=False,
        highlight=False,
    )
    buf = cfg.buffer
    console.print(
        f"telemetry buffer {buf.path or '<state dir>/' + cfg.gateway_id + '.telemetry.sqlite3'}: "
        f"max {buf.max_bytes / 2**20:g} MiB, max age {buf.max_age_s:g} s, {buf.policy}",
        markup=False,
        highlight=False,
    )
    if connect and check_connect(console, cfg, timeout):
        raise typer.Exit(1)


agent_app.command("enroll")(enroll_cmd)
agent_app.command("renew")(renew_cmd)


@agent_app.command("schema")
def schema(
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write to this file instead of stdout.", metavar="FILE"
    ),
) -> None:
    """Print the JSON Schema of the site YAML (editors validate with it; the
    package ships it as gridpilot/edge_agent/site.schema.json)."""
    write_schema(output)


@agent_app.command("opcua-cert")
def opcua_cert(
    out: Path = typer.Option(..., "--out", help="Folder for agent-cert.der and agent-key.pem."),
    uri: str = typer.Option(
        ..., "--uri", help="The agent's OPC UA application URI (goes into the certificate)."
    ),
    host: str = typer.Option("localhost", "--host", help="DNS name for the certificate."),
) -> None:
    """Create a self-signed OPC UA client certificate for a device's
    security: block (valid one year; add it to the server's trusted list)."""
    cert, key = make_opcua_certificate(out, uri, host)
    typer.echo(f"wrote {cert} and {key}")


@agent_app.command("hash-password")
def hash_password_cmd(
    stdin: bool = typer.Option(
        False, "--stdin", help="Read the password from the first line of stdin (no prompt)."
    ),
) -> None:
    """Hash a password for an opcua_server user (password_hash in the site
    YAML); the plain password never goes into the config."""
    from gridpilot.security.passwords import hash_password

    if stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        typer.echo("gridpilot agent hash-password: the password is empty", err=True)
        raise typer.Exit(EXIT_CONFIG)
    typer.echo(hash_password(password))


def _load_or_exit(path: Path) -> SiteConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        typer.echo(f"{path}: {len(exc.problems)} problem(s)", err=True)
        raise typer.Exit(EXIT_CONFIG) from None


def _with_headend(cfg: SiteConfig, address: str) -> SiteConfig:
    try:
        return cfg.with_headend_address(address)
    except ValidationError as exc:
        for err in exc.errors():
            typer.echo(f"--headend: {err['msg'].removeprefix('Value error, ')}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None


def _configure_logging(level: str) -> None:
    quiet_protocol_loggers()
    if structlog.is_configured():  # the host process set it up already
        return
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            add_trace_ids,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.LogfmtRenderer(
                key_order=["timestamp", "level", "event"], drop_missing=True
            ),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


async def _run(cfg: SiteConfig, state_dir: Path) -> None:
    try:
        agent = EdgeAgent(cfg, state_dir=state_dir)
    except (BufferLocked, sqlite3.Error, OSError) as exc:
        where = buffer_path(cfg, state_dir)
        typer.echo(f"gridpilot agent: telemetry buffer {where}: {exc}", err=True)
        raise typer.Exit(1) from None
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def on_signal() -> None:
        agent.stop()
        for sig in signals:  # a second signal gets the default (immediate) behaviour
            loop.remove_signal_handler(sig)

    for sig in signals:
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, on_signal)
    await agent.run()
