"""Where the CLI's REST calls go, and which token they carry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gridpilot.cli.endpoint import DEFAULT_API, resolve


@pytest.fixture
def up_json(tmp_path: Path) -> Path:
    token = tmp_path / "admin-token"
    token.write_text("gp_local\n")
    path = tmp_path / "up.json"
    path.write_text(
        json.dumps({"api_url": "http://127.0.0.1:18080/api/v1", "admin_token_file": str(token)})
    )
    return path


def test_the_local_up_gives_its_url_and_its_admin_token(
    up_json: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GRIDPILOT_TOKEN", raising=False)
    ep = resolve(None, up_json)
    assert (ep.api, ep.token, ep.source) == ("http://127.0.0.1:18080", "gp_local", str(up_json))


def test_gridpilot_token_wins_over_the_local_admin_token(
    up_json: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRIDPILOT_TOKEN", "gp_mine")
    assert resolve(None, up_json).token == "gp_mine"


def test_an_explicit_api_never_gets_the_local_admin_token(
    up_json: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GRIDPILOT_TOKEN", raising=False)
    ep = resolve("https://headend.example/", up_json)
    assert (ep.api, ep.token) == ("https://headend.example", None)


def test_without_a_running_up_the_default_url_and_why(tmp_path: Path) -> None:
    ep = resolve(None, tmp_path / "up.json")
    assert ep.api == DEFAULT_API
    assert "no running `gridpilot up`" in ep.hint() and "GRIDPILOT_API_URL" in ep.hint()
