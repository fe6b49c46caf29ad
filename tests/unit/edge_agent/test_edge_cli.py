"""`gridpilot agent check` and the agent command's argument handling."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from gridpilot.cli.agent import agent_app

DEMO = Path(__file__).parents[3] / "src" / "gridpilot" / "ops" / "demo" / "demo-site.yaml"
runner = CliRunner()


def test_check_prints_the_assets_of_a_valid_config() -> None:
    result = runner.invoke(agent_app, ["check", str(DEMO)])
    assert result.exit_code == 0, result.output
    for text in ("demo-bess", "demo-pv", "demo-ev", "-250 … 250", "OK"):
        assert text in result.output


def test_check_lists_problems_with_file_and_line_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "site.yaml"
    bad.write_text(DEMO.read_text().replace("default_p_kw: 0 ", "default_p_kw: 900 "))
    result = runner.invoke(agent_app, ["check", str(bad)])
    assert result.exit_code == 2
    line = 1 + bad.read_text().splitlines().index(
        next(x for x in bad.read_text().splitlines() if "default_p_kw: 900 " in x)
    )
    assert f"{bad}:{line}: assets[0].default_p_kw: 900.0 is outside limits" in result.output
    assert "Traceback" not in result.output


def test_running_without_config_is_a_usage_error() -> None:
    result = runner.invoke(agent_app, [])
    assert result.exit_code == 2
    assert "--config" in result.output


def test_a_bad_headend_override_exits_2() -> None:
    result = runner.invoke(agent_app, ["--config", str(DEMO), "--headend", "no-port"])
    assert result.exit_code == 2
    assert "--headend: 'no-port' is not host:port" in result.output


def test_help_explains_the_commands() -> None:
    result = runner.invoke(agent_app, ["--help"])
    assert result.exit_code == 0
    assert "--config" in result.output and "--headend" in result.output
    assert "check" in result.output
