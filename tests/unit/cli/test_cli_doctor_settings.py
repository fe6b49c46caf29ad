"""Where `gridpilot doctor` looks: GRIDPILOT_* first, else the local running
`gridpilot up`'s database and Temporal (its up.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gridpilot.cli import doctor


def test_without_a_database_url_the_local_ups_database_and_temporal_are_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    up_json = tmp_path / "up.json"
    up_json.write_text(
        json.dumps(
            {
                "api_url": "http://127.0.0.1:18080/api/v1",
                "database_url": "postgresql://gp@127.0.0.1:15432/gridpilot",
                "temporal_address": "127.0.0.1:17233",
            }
        )
    )
    monkeypatch.delenv("GRIDPILOT_DATABASE_URL", raising=False)
    monkeypatch.delenv("GRIDPILOT_TEMPORAL_ADDRESS", raising=False)
    monkeypatch.setattr(doctor, "default_up_json", lambda: up_json)
    settings = doctor._settings()
    assert settings.database_url == "postgresql://gp@127.0.0.1:15432/gridpilot"
    assert settings.temporal_address == "127.0.0.1:17233"


def test_the_environment_wins_over_a_local_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    up_json = tmp_path / "up.json"
    up_json.write_text(json.dumps({"api_url": "x", "database_url": "postgresql://up/db"}))
    monkeypatch.setenv("GRIDPILOT_DATABASE_URL", "postgresql://env@db.example/gridpilot")
    monkeypatch.setattr(doctor, "default_up_json", lambda: up_json)
    assert doctor._settings().database_url == "postgresql://env@db.example/gridpilot"


def test_two_subjects_at_once_are_refused_with_exit_code_2() -> None:
    from typer.testing import CliRunner

    from gridpilot.cli.main import app

    result = CliRunner().invoke(app, ["doctor", "--site", "s1", "--asset", "a1"])
    assert result.exit_code == 2
    assert "one of --site, --asset, --dispatch" in result.output
