"""``gridpilot dispatch``: submit, list, show and cancel through the REST API."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from .endpoint import API_ENV, TOKEN_ENV, Endpoint, resolve

dispatch_app = typer.Typer(
    help=(
        "Dispatches through the REST API. The API is --api / "
        f"{API_ENV}, else the local running `gridpilot up` (its up.json), else "
        f"http://127.0.0.1:8080; the bearer token is {TOKEN_ENV}, else that local "
        "`up`'s admin token."
    ),
    no_args_is_help=True,
)

ApiOpt = Annotated[
    str | None,
    typer.Option(
        envvar=API_ENV,
        help="base URL of the REST API (default: the local `gridpilot up`, else :8080)",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the raw JSON")]


def _call(
    method: str,
    api: str | None,
    path: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> Any:
    ep: Endpoint = resolve(api)
    headers = dict(headers or {})
    if ep.token:
        headers["Authorization"] = f"Bearer {ep.token}"
    try:
        r = httpx.request(
            method, ep.api + path, json=body, headers=headers, params=params, timeout=30
        )
    except httpx.HTTPError as exc:
        typer.echo(f"gridpilot: cannot reach {ep.api}: {exc} {ep.hint()}", err=True)
        raise typer.Exit(1) from None
    try:
        data = r.json() if r.content else None
    except ValueError:
        data = None
    if r.status_code >= 400:
        msg = data.get("message") if isinstance(data, dict) else r.text
        hint = f" {ep.hint()}" if r.status_code == 401 else ""
        typer.echo(f"gridpilot: {r.status_code} {msg}{hint}", err=True)
        raise typer.Exit(1)
    return data


def _print(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@dispatch_app.command("submit")
def submit(
    p_kw: Annotated[float, typer.Option(help="kW; > 0 exports, < 0 imports")],
    duration_s: Annotated[int, typer.Option(help="seconds")],
    asset: Annotated[str | None, typer.Option(help="target asset id")] = None,
    site: Annotated[str | None, typer.Option(help="target site id")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="retry-safe key")] = None,
    priority: Annotated[int, typer.Option(help="0-100; >= the live one supersedes it")] = 0,
    start_at: Annotated[str | None, typer.Option(help="scheduled start (ISO 8601)")] = None,
    ramp_kw_per_s: Annotated[
        float | None, typer.Option(help="ramp limit; the agent steps toward p_kw")
    ] = None,
    accept_partial: Annotated[
        bool, typer.Option(help="site target beyond its capacity: dispatch what it can")
    ] = False,
    as_json: JsonOpt = False,
    api: ApiOpt = None,
) -> None:
    """Submit a dispatch to an asset or a site; prints the same summary as `show`."""
    body = {
        "asset_id": asset,
        "site_id": site,
        "p_kw": p_kw,
        "duration_s": duration_s,
        "priority": priority,
        "start_at": start_at,
        "ramp_kw_per_s": ramp_kw_per_s,
        "accept_partial": accept_partial or None,
    }
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    payload = {k: v for k, v in body.items() if v is not None}
    created = _call("POST", api, "/api/v1/dispatches", payload, headers)
    if as_json:
        _print(created)
        return
    # The same summary as `show` (its timeline so far).
    typer.echo(timeline(_call("GET", api, f"/api/v1/dispatches/{created['id']}")))


@dispatch_app.command("list")
def list_(
    state: Annotated[str | None, typer.Option(help="only this state")] = None,
    asset: Annotated[str | None, typer.Option(help="only this asset")] = None,
    site: Annotated[str | None, typer.Option(help="only this site")] = None,
    since: Annotated[str | None, typer.Option(help="created at or after (ISO 8601)")] = None,
    as_json: JsonOpt = False,
    api: ApiOpt = None,
) -> None:
    """List recent dispatches, newest first."""
    params = {"state": state, "asset_id": asset, "site_id": site, "since": since}
    rows = _call("GET", api, "/api/v1/dispatches", params={k: v for k, v in params.items() if v})
    if as_json:
        _print(rows)
        return
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = 1000  # piped: every column whole (a terminal gets what fits)
    console.print(dispatch_table(rows))


def _time(value: str | None) -> str:
    """An API time as an operator reads it: UTC, to the second."""
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except ValueError:
        return value


def dispatch_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name, justify in (
        ("ID", "left"),
        ("STATE", "left"),
        ("P_KW", "right"),
        ("TARGET", "left"),
        ("PRIO", "right"),
        ("START (UTC)", "left"),
        ("END (UTC)", "left"),
        ("REASON", "left"),
    ):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for d in rows:
        target = f"asset {d['asset_id']}" if d["asset_id"] else f"site {d['site_id']}"
        table.add_row(
            d["id"],
            d["state"],
            f"{d['p_kw']:.1f}",
            target,
            str(d.get("priority", 0)),
            _time(d.get("start_at")),
            _time(d.get("end_at")),
            d.get("reason") or "",
        )
    return table


@dispatch_app.command("show")
def show(
    dispatch_id: str,
    as_json: JsonOpt = False,
    api: ApiOpt = None,
) -> None:
    """Show one dispatch: its timeline, why it ended, and the evidence from telemetry."""
    d = _call("GET", api, f"/api/v1/dispatches/{dispatch_id}")
    if as_json:
        _print(d)
        return
    typer.echo(timeline(d))


def timeline(d: dict[str, Any]) -> str:
    """A dispatch as an operator reads it: was it applied, when, how long, why not."""
    target = f"asset {d['asset_id']}" if d["asset_id"] else f"site {d['site_id']}"
    lines = [
        f"dispatch {d['id']}",
        f"  target     {target}  p_kw {d['p_kw']:g}  for {d['duration_s']} s"
        + (
            f"  (written on site, by {d['submitted_by']})"
            if d.get("source") == "local"
            else f"  (priority {d.get('priority', 0)}, by {d['submitted_by']})"
        ),
        f"  window     {d['start_at']} → {d['end_at']}",
        f"  state      {d['state']}" + (f"  reason {d['reason']}" if d["reason"] else ""),
    ]
    if d.get("trace_id"):  # its OpenTelemetry trace (docs/tracing.md)
        lines.append(f"  trace      {d.get('trace_url') or d['trace_id']}")
    if d.get("superseded_by"):
        lines.append(f"  superseded by {d['superseded_by']}")
    if d.get("applied_p_kw") is not None:
        lines.append(f"  applied    {d['applied_p_kw']:g} kW")
    for w in d.get("warnings") or []:
        lines.append(f"  warning    {w}")
    lines.append("  timeline")
    for x in d.get("transitions") or []:
        why = f"  {x['reason']}" if x["reason"] else ""
        detail = f"  ({x['detail']})" if x["detail"] else ""
        lines.append(
            f"    {x['seq']:>2}  {x['at']}  {x['to_state']:<9} by {x['actor']}{why}{detail}"
        )
    if d.get("late_acks"):
        lines.append("  the agent, after the end (changes nothing)")
    for x in d.get("late_acks") or []:
        why = f"  {x['reason']}" if x["reason"] else ""
        detail = f"  ({x['detail']})" if x["detail"] else ""
        lines.append(f"        {x['at']}  {x['state']:<9} by agent{why}{detail}")
    ev = d.get("evidence")
    if ev:

        def kw(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.2f} kW"

        reached = ev["time_to_target_s"]
        lines += [
            "  evidence (asset telemetry during the active window)",
            f"    samples {ev['samples']}  mean p {kw(ev['mean_p_kw'])}"
            f"  vs setpoint {ev['setpoint_kw']:g} kW",
            f"    deviation mean {kw(ev['mean_abs_deviation_kw'])}"
            f"  max {kw(ev['max_abs_deviation_kw'])}",
            "    target reached "
            + ("never" if reached is None else f"after {reached:.1f} s")
            + f" (within {ev['tolerance_kw']:.2f} kW)",
        ]
    if d.get("allocation"):
        a = d["allocation"]
        lines.append(
            f"  allocation {a['policy']} v{a['version']}: allocated {a['allocated_kw']:g} kW,"
            f" unallocated {a['unallocated_kw']:g} kW"
        )
        for line in a["lines"]:
            lines.append(f"    {line['asset_id']:<20} {line['p_kw']:>10.3f} kW")
    if d.get("children"):
        lines.append("  children   " + ", ".join(d["children"]))
    return "\n".join(lines)


@dispatch_app.command("cancel")
def cancel(dispatch_id: str, api: ApiOpt = None) -> None:
    """Cancel a dispatch (idempotent); the agent is told to release the asset."""
    _print(_call("POST", api, f"/api/v1/dispatches/{dispatch_id}/cancel", {}))
