"""``gridpilot dispatch``: submit, list, show and cancel through the REST API."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import httpx
import typer

dispatch_app = typer.Typer(help="Dispatches through the REST API.", no_args_is_help=True)

ApiOpt = Annotated[
    str,
    typer.Option(envvar="GRIDPILOT_API_URL", help="base URL of the REST API"),
]


def _call(
    method: str,
    api: str,
    path: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    headers = dict(headers or {})
    token = os.environ.get("GRIDPILOT_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        r = httpx.request(method, api.rstrip("/") + path, json=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        typer.echo(f"gridpilot: cannot reach {api}: {exc}", err=True)
        raise typer.Exit(1) from None
    data = r.json() if r.content else None
    if r.status_code >= 400:
        msg = data.get("message") if isinstance(data, dict) else r.text
        typer.echo(f"gridpilot: {r.status_code} {msg}", err=True)
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
    api: ApiOpt = "http://127.0.0.1:8080",
) -> None:
    """Submit a dispatch to an asset or a site."""
    body = {"asset_id": asset, "site_id": site, "p_kw": p_kw, "duration_s": duration_s}
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    payload = {k: v for k, v in body.items() if v is not None}
    _print(_call("POST", api, "/api/v1/dispatches", payload, headers))


@dispatch_app.command("list")
def list_(
    state: Annotated[str | None, typer.Option(help="only this state")] = None,
    api: ApiOpt = "http://127.0.0.1:8080",
) -> None:
    """List recent dispatches."""
    rows = _call("GET", api, "/api/v1/dispatches" + (f"?state={state}" if state else ""))
    for d in rows:
        target = d["asset_id"] or d["site_id"]
        typer.echo(
            f"{d['id']}  {d['state']:<10} {d['p_kw']:>9.1f} kW  {target}  {d['reason'] or ''}"
        )


@dispatch_app.command("show")
def show(dispatch_id: str, api: ApiOpt = "http://127.0.0.1:8080") -> None:
    """Show one dispatch with its transitions."""
    _print(_call("GET", api, f"/api/v1/dispatches/{dispatch_id}"))


@dispatch_app.command("cancel")
def cancel(dispatch_id: str, api: ApiOpt = "http://127.0.0.1:8080") -> None:
    """Cancel a dispatch (idempotent); the agent is told to release the asset."""
    _print(_call("POST", api, f"/api/v1/dispatches/{dispatch_id}/cancel", {}))
