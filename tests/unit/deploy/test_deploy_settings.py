"""Every setting in one place: each GRIDPILOT_* variable that
docker-compose.yml, the Kubernetes manifests, the systemd unit and the docs
name is a setting of ``gridpilot.ops.settings.Settings`` (or a variable of the
CLI's own: its options' ``envvar`` and the API client's, or one the test
suite reads), and every setting is in .env.example."""

from __future__ import annotations

import re
from pathlib import Path

import click
import typer.main
from gp_testing.backends import CONTAINERS_ENV

from gridpilot.cli import endpoint
from gridpilot.cli.main import app
from gridpilot.ops.settings import Settings

REPO = Path(__file__).resolve().parents[3]
VARIABLE = re.compile(r"\bGRIDPILOT_[A-Z0-9_]*[A-Z0-9]\b")


def settings_variables() -> set[str]:
    return {f"GRIDPILOT_{name.upper()}" for name in Settings.model_fields}


def cli_variables() -> set[str]:
    """Variables the CLI reads itself: option envvars and the API client's."""
    found = {endpoint.API_ENV, endpoint.TOKEN_ENV}

    def walk(command: click.Command) -> None:
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            found.update([envvar] if isinstance(envvar, str) else envvar or [])
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    return found


def suite_variables() -> set[str]:
    """Variables only the tests read (docs/operations.md tells how to run them)."""
    return {CONTAINERS_ENV}


def deployment_files() -> list[Path]:
    files = [REPO / "docker-compose.yml", REPO / "README.md"]
    files += sorted((REPO / "deploy").rglob("*.yaml"))
    files += sorted((REPO / "deploy").rglob("*.service"))
    files += sorted((REPO / "docs").glob("*.md"))
    return files


def test_every_variable_named_in_deployments_and_docs_is_a_setting() -> None:
    known = settings_variables() | cli_variables() | suite_variables()
    unknown = {
        f"{path.relative_to(REPO)}: {name}"
        for path in deployment_files()
        for name in VARIABLE.findall(path.read_text())
        if name not in known
    }
    assert not unknown, sorted(unknown)


def test_the_scan_sees_the_deployments() -> None:
    # Not a vacuous pass: the files are there and do name settings.
    names = {n for p in deployment_files() for n in VARIABLE.findall(p.read_text())}
    assert {"GRIDPILOT_DATABASE_URL", "GRIDPILOT_GRPC_TLS_CERT_FILE"} <= names
    assert "GRIDPILOT_PKI_DIR" in cli_variables()


def test_env_example_lists_every_setting() -> None:
    text = (REPO / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*(GRIDPILOT_[A-Z0-9_]+)=", text, re.MULTILINE))
    assert settings_variables() - listed == set()
    assert listed - settings_variables() == set(), "in .env.example but not a setting"
