"""The site config's JSON Schema, generated from the pydantic model and
shipped as ``site.schema.json`` so editors validate and complete site YAML
(``# yaml-language-server: $schema=...`` in the file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import SiteConfig

SCHEMA_PATH = Path(__file__).with_name("site.schema.json")


def site_schema() -> dict[str, Any]:
    schema = SiteConfig.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "GridPilot edge agent site config (version 1)",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def render_schema() -> str:
    return json.dumps(site_schema(), indent=2, ensure_ascii=False) + "\n"
