"""``${NAME}`` in a site YAML: values from the environment, a missing
variable named with its line, keys never touched, ``$${`` literal."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridpilot.edge_agent import ConfigError, load_config

SITE = """\
version: 1
gateway_id: gw-env
site: {{id: site-env, name: "{name}", timezone: UTC}}
headend:
  address: ${{HEADEND_HOST}}:50051
  insecure: true
telemetry_interval_s: {interval}
assets:
  - id: bess-env
    type: bess
    limits: {{p_min_kw: -10, p_max_kw: 10}}
    default_p_kw: 0
    capacity_kwh: 20
    device: {{kind: simulated}}
"""


def _write(tmp_path: Path, name: str = "${SITE_NAME}", interval: str = "${INTERVAL}") -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(SITE.format(name=name, interval=interval))
    return path


def test_values_come_from_the_environment_typed_as_if_written(tmp_path: Path) -> None:
    env = {"HEADEND_HOST": "headend.example", "SITE_NAME": "Plant 7", "INTERVAL": "2.5"}
    cfg = load_config(_write(tmp_path), env)
    assert cfg.headend.address == "headend.example:50051"
    assert cfg.site.name == "Plant 7"
    assert cfg.telemetry_interval_s == 2.5  # a plain ${INTERVAL} is a number


def test_a_missing_variable_is_named_with_its_line_and_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path), {"SITE_NAME": "x", "INTERVAL": "1"})
    [problem] = caught.value.problems
    assert (problem.line, problem.field) == (5, "headend.address")
    assert "environment variable HEADEND_HOST is not set" in problem.message


def test_defaults_and_the_literal_escape(tmp_path: Path) -> None:
    path = _write(tmp_path, name="$${SITE_NAME} ${OWNER:-ACME}", interval="${INTERVAL:-3}")
    cfg = load_config(path, {"HEADEND_HOST": "h"})
    assert cfg.site.name == "${SITE_NAME} ACME"
    assert cfg.telemetry_interval_s == 3
