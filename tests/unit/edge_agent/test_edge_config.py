"""Site config: the demo loads, and every problem names file:line and the field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gridpilot.core.assets import AssetType, PowerLimits
from gridpilot.edge_agent import ConfigError, load_config, site_assets
from gridpilot.edge_agent.config import BessAsset, SimulatedPvDevice

DEMO = Path(__file__).parents[3] / "src" / "gridpilot" / "ops" / "demo" / "demo-site.yaml"

GOOD = """\
version: 1
gateway_id: gw-1
site: {id: site-1, name: Site One}
headend: {address: "127.0.0.1:50051", insecure: true}
assets:
  - id: bess-1
    type: bess
    limits: {p_min_kw: -100, p_max_kw: 100}
    default_p_kw: 0
    capacity_kwh: 200
    device: {kind: simulated}
  - id: pv-1
    type: pv
    limits: {p_min_kw: 0, p_max_kw: 50}
    default_p_kw: 50
    device: {kind: simulated}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(p).removeprefix(f"{path}:") for p in info.value.problems]


def test_demo_site_loads_with_bess_pv_and_ev_charger() -> None:
    cfg = load_config(DEMO)
    assets = {a.asset_id: a for a in site_assets(cfg)}
    assert cfg.gateway_id == "demo-gw" and cfg.site.id == "demo-site"
    assert cfg.headend.address == "127.0.0.1:50051" and cfg.headend.insecure
    assert assets["demo-bess"].asset_type is AssetType.BESS
    assert assets["demo-bess"].limits == PowerLimits(-250, 250)
    assert assets["demo-bess"].capacity_kwh == 500
    assert assets["demo-pv"].limits == PowerLimits(0, 300)
    assert assets["demo-pv"].default_p_kw == 300  # uncurtailed
    assert assets["demo-ev"].limits == PowerLimits(-22, 0)
    pv = cfg.asset("demo-pv")
    assert pv is not None and isinstance(pv.device, SimulatedPvDevice)
    assert pv.device.min_fraction > 0  # the demo always shows PV power
    assert all(a.site_id == "demo-site" for a in assets.values())


def test_defaults_fill_in_intervals_and_buffer(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.telemetry_interval_s == 1.0
    assert cfg.heartbeat_interval_s == 10.0
    assert cfg.failsafe_timeout_s == 60.0
    assert cfg.buffer.path is None  # the CLI puts it next to the config or in --state-dir
    assert (cfg.buffer.max_bytes, cfg.buffer.max_age_s) == (256 * 2**20, 7 * 86400)
    assert cfg.buffer.policy == "drop_oldest"
    assert isinstance(cfg.assets[0], BessAsset)


def test_unknown_key_names_line_field_and_suggests_the_right_one(tmp_path: Path) -> None:
    text = GOOD.replace("    default_p_kw: 0\n", "    default_p_kw: 0\n    defualt_q_kvar: 1\n")
    assert problems(tmp_path, text) == [
        "10: assets[0].defualt_q_kvar: unknown key; did you mean 'default_p_kw'? allowed: "
        "id, name, limits, default_p_kw, type, capacity_kwh, device"
    ]


def test_missing_key_points_at_the_mapping_that_lacks_it(tmp_path: Path) -> None:
    text = GOOD.replace("    capacity_kwh: 200\n", "")
    assert problems(tmp_path, text) == ["6: assets[0].capacity_kwh: missing required key"]


def test_default_outside_limits_names_default_p_kw(tmp_path: Path) -> None:
    text = GOOD.replace("    default_p_kw: 50\n", "    default_p_kw: 80\n")
    assert problems(tmp_path, text) == [
        "15: assets[1].default_p_kw: 80.0 is outside limits [0.0, 50.0] kW"
    ]


def test_duplicate_asset_ids_name_the_second_one(tmp_path: Path) -> None:
    text = GOOD.replace("  - id: pv-1\n", "  - id: bess-1\n")
    assert problems(tmp_path, text) == [
        "12: assets[1].id: duplicate asset id 'bess-1' (first at assets[0])"
    ]


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    text = (
        GOOD.replace("gw-1", "gw 1")
        .replace("telemetry_interval_s", "x")
        .replace("{kind: simulated}\n  - id: pv-1", "{kind: simulated, colour: red}\n  - id: pv-1")
        .replace("type: pv", "type: solar")
    )
    found = problems(tmp_path, text)
    assert found == [
        "2: gateway_id: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        "11: assets[0].device.colour: unknown key; allowed: kind, nominal_voltage_v, "
        "nominal_frequency_hz, initial_soc_pct, round_trip_efficiency, soh_pct, ambient_temp_c",
        "13: assets[1].type: unknown type 'solar'; expected one of: bess, pv, wind, ev_charger",
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "type: pv\n    limits: {p_min_kw: 0,",
            "type: pv\n    limits: {p_min_kw: -5,",
            "14: assets[1].limits.p_min_kw: a pv cannot import: use >= 0",
        ),
        (
            "p_max_kw: 100}\n    default_p_kw: 0",
            "p_max_kw: -10}\n    default_p_kw: -10",
            "8: assets[0].limits: a bess needs p_min_kw <= 0 <= p_max_kw",
        ),
        (
            "limits: {p_min_kw: -100, p_max_kw: 100}",
            "limits: {p_min_kw: 100, p_max_kw: -100}",
            "8: assets[0].limits.p_min_kw: 100.0 is above p_max_kw -100.0",
        ),
        (
            'address: "127.0.0.1:50051"',
            'address: "127.0.0.1"',
            "4: headend.address: '127.0.0.1' is not host:port (e.g. headend.example.com:50051)",
        ),
    ],
)
def test_limits_and_address_rules(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in GOOD
    assert problems(tmp_path, GOOD.replace(old, new)) == [expected]


def test_ev_charger_must_be_able_to_charge(tmp_path: Path) -> None:
    text = GOOD + (
        "  - id: ev-1\n    type: ev_charger\n    limits: {p_min_kw: 0, p_max_kw: 11}\n"
        "    default_p_kw: 0\n    device: {kind: simulated}\n"
    )
    assert problems(tmp_path, text) == [
        "19: assets[2].limits.p_min_kw: an ev_charger charges: use p_min_kw < 0"
    ]


def test_tls_needs_all_three_files_unless_insecure(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    text = GOOD.replace("insecure: true}", "insecure: false, ca_file: ca.pem}")
    assert problems(tmp_path, text) == [
        "4: headend.cert_file: required unless insecure: true (mutual TLS)",
        "4: headend.key_file: required unless insecure: true (mutual TLS)",
    ]


def test_tls_files_resolve_next_to_the_config(tmp_path: Path) -> None:
    for name in ("ca.pem", "agent.pem", "agent.key"):
        (tmp_path / name).write_text("x")
    text = GOOD.replace(
        "insecure: true}",
        "insecure: false, ca_file: ca.pem, cert_file: agent.pem, key_file: agent.key}",
    )
    cfg = load_config(write(tmp_path, text))
    assert cfg.headend.ca_file == tmp_path / "ca.pem"


def test_yaml_duplicate_key_is_an_error_not_silently_the_last(tmp_path: Path) -> None:
    text = GOOD.replace("    default_p_kw: 0\n", "    default_p_kw: 0\n    default_p_kw: 5\n")
    assert problems(tmp_path, text) == ["10: assets[0].default_p_kw: duplicate key"]


def test_broken_yaml_and_empty_file(tmp_path: Path) -> None:
    assert problems(tmp_path, "version: 1\nsite: {id: x\n")[0].startswith("3: invalid YAML:")
    assert problems(tmp_path, "") == ["1: the file is empty"]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_buffer_path_is_relative_to_the_config_and_policy_is_checked(tmp_path: Path) -> None:
    text = GOOD + "buffer: {path: state/gw.sqlite3, max_bytes: 1048576, policy: drop_newest}\n"
    cfg = load_config(write(tmp_path, text))
    assert cfg.buffer.path == tmp_path / "state" / "gw.sqlite3"
    assert (cfg.buffer.max_bytes, cfg.buffer.policy) == (1048576, "drop_newest")
    bad = GOOD + "buffer: {policy: drop_random, max_bytes: 10}\n"
    found = problems(tmp_path, bad)
    assert any("buffer.policy" in p for p in found), found
    assert any("buffer.max_bytes" in p and "65536" in p for p in found), found


def test_failover_addresses_are_dialled_after_the_address(tmp_path: Path) -> None:
    text = GOOD.replace(
        "insecure: true}", 'insecure: true, failover_addresses: ["10.0.0.2:50051", "[::1]:50051"]}'
    )
    cfg = load_config(write(tmp_path, text))
    assert cfg.headend.addresses == ["127.0.0.1:50051", "10.0.0.2:50051", "[::1]:50051"]


@pytest.mark.parametrize(
    ("failover", "expected"),
    [
        (
            '["10.0.0.2"]',
            "4: headend.failover_addresses: '10.0.0.2' is not host:port "
            "(e.g. headend.example.com:50051)",
        ),
        (
            '["127.0.0.1:50051"]',
            "4: headend.failover_addresses: an address is listed twice (address included)",
        ),
    ],
)
def test_failover_address_rules(tmp_path: Path, failover: str, expected: str) -> None:
    text = GOOD.replace("insecure: true}", f"insecure: true, failover_addresses: {failover}}}")
    assert problems(tmp_path, text) == [expected]


def test_headend_override_takes_a_comma_separated_list() -> None:
    cfg = load_config(DEMO).with_headend_address("10.0.0.1:50051, 10.0.0.2:50051")
    assert cfg.headend.addresses == ["10.0.0.1:50051", "10.0.0.2:50051"]
    assert load_config(DEMO).with_headend_address("h:1").headend.addresses == ["h:1"]
