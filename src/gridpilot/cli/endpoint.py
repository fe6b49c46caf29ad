"""Where the CLI's REST calls go, and with which token.

In order: ``--api`` / ``GRIDPILOT_API_URL``; else the local running
``gridpilot up`` (its ``up.json`` in the default data dir, whatever ports it
was started with); else http://127.0.0.1:8080. The token is
``GRIDPILOT_TOKEN``; else, when the URL is that local ``up``'s, its admin
token file (readable only by the user who started it).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

DEFAULT_API = "http://127.0.0.1:8080"
API_ENV = "GRIDPILOT_API_URL"
TOKEN_ENV = "GRIDPILOT_TOKEN"


def default_up_json() -> Path:
    """``up.json`` of a ``gridpilot up`` run with the default ``--data-dir``."""
    return platformdirs.user_data_path("gridpilot") / "demo" / "up.json"


@dataclass(frozen=True)
class Endpoint:
    api: str  # base URL, without /api/v1
    token: str | None
    source: str  # how the URL was found, for error messages

    def hint(self) -> str:
        return (
            f"(API from {self.source}; set {API_ENV} or --api for another headend, "
            f"{TOKEN_ENV} for its token)"
        )


def read_up_json(path: Path) -> dict[str, object] | None:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and isinstance(info.get("api_url"), str) else None


def resolve(api: str | None, up_json: Path | None = None) -> Endpoint:
    token = os.environ.get(TOKEN_ENV) or None
    if api:
        source = API_ENV if os.environ.get(API_ENV) == api else "--api"
        return Endpoint(api.rstrip("/"), token, source)
    path = up_json or default_up_json()
    info = read_up_json(path)
    if info is None:
        return Endpoint(DEFAULT_API, token, f"the default; no running `gridpilot up` at {path}")
    base = str(info["api_url"]).rstrip("/").removesuffix("/api/v1")
    if token is None and isinstance(info.get("admin_token_file"), str):
        try:
            token = Path(str(info["admin_token_file"])).read_text().strip() or None
        except OSError:
            token = None
    return Endpoint(base, token, str(path))
