"""opcua_server: secure defaults, and every refusal names file:line and the field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gridpilot.edge_agent import ConfigError, load_config
from gridpilot.edge_agent.config import OpcuaServerConfig
from gridpilot.edge_agent.control.local_control import Arbitration
from gridpilot.security.passwords import hash_password

HASH = hash_password("pw", n=2**4)

SITE = """\
version: 1
gateway_id: gw-1
site: {id: site-1}
headend: {address: "127.0.0.1:50051", insecure: true}
assets:
  - id: bess-1
    type: bess
    limits: {p_min_kw: -100, p_max_kw: 100}
    default_p_kw: 0
    capacity_kwh: 200
    device: {kind: simulated}
opcua_server:
"""


def load(tmp_path: Path, block: str) -> OpcuaServerConfig:
    path = tmp_path / "site.yaml"
    path.write_text(SITE + textwrap.indent(textwrap.dedent(block), "  "))
    server = load_config(path).opcua_server
    assert server is not None
    return server


def problems(tmp_path: Path, block: str) -> list[str]:
    path = tmp_path / "site.yaml"
    path.write_text(SITE + textwrap.indent(textwrap.dedent(block), "  "))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(p).removeprefix(f"{path}:") for p in info.value.problems]


def user(name: str = "op", role: str = "operator") -> str:
    return f"users: [{{name: {name}, role: {role}, password_hash: '{HASH}'}}]\n"


def test_defaults_are_secure(tmp_path: Path) -> None:
    cfg = load(tmp_path, user())
    assert cfg.endpoint == "opc.tcp://0.0.0.0:4840/gridpilot/"
    assert cfg.security_policies == ["Basic256Sha256_SignAndEncrypt"]
    assert cfg.anonymous is False
    assert cfg.arbitration is Arbitration.CLOUD_PRIORITY
    assert (cfg.local_lease_s, cfg.stale_after_s, cfg.publish_interval_s) == (3600, 10, 1.0)
    assert cfg.namespace_for("gw-1") == "urn:gridpilot:edge:gw-1"
    assert cfg.application_uri_for("gw-1") == "urn:gridpilot:edge:gw-1:server"
    assert cfg.certificate is None and cfg.trusted_clients_dir is None


def test_none_policy_only_when_written(tmp_path: Path) -> None:
    cfg = load(tmp_path, user() + "security_policies: [Basic256Sha256_SignAndEncrypt, None]\n")
    assert "None" in cfg.security_policies
    # None alone would send passwords in clear
    assert problems(tmp_path, user() + "security_policies: [None]\n") == [
        "14: opcua_server.security_policies: with only None, passwords would cross the network "
        "in plain text: also offer a secure policy (e.g. Basic256Sha256_SignAndEncrypt)"
    ]
    # anonymous-only with None is allowed (read-only, nothing secret)
    assert load(tmp_path, "anonymous: true\nsecurity_policies: [None]\n").anonymous
    found = problems(tmp_path, user() + "security_policies: [Basic128Rsa15_Sign]\n")
    assert found[0].startswith("14: opcua_server.security_policies[0]: should be ")


def test_plain_password_is_refused_with_the_fix(tmp_path: Path) -> None:
    found = problems(tmp_path, "users:\n  - name: op\n    role: operator\n    password: hunter2\n")
    assert found == [
        "16: opcua_server.users[0].password: plain passwords are not accepted: run "
        "'gridpilot agent hash-password' and put its output in password_hash"
    ]


def test_user_rules_name_the_field(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "users:\n  - {name: op, role: admin, password_hash: 'x'}\n",
    )
    assert "14: opcua_server.users[0].role: should be 'operator' or 'viewer'" in found
    assert any(
        p.startswith("14: opcua_server.users[0].password_hash: not a password hash") for p in found
    )
    dup = problems(
        tmp_path,
        f"users:\n  - {{name: op, role: operator, password_hash: '{HASH}'}}\n"
        f"  - {{name: op, role: viewer, password_hash: '{HASH}'}}\n",
    )
    assert dup == ["15: opcua_server.users[1].name: duplicate user 'op' (first at users[0])"]
    assert problems(tmp_path, "anonymous: false\n") == [
        "12: opcua_server.users: nobody could log in: add users (or anonymous: true)"
    ]


def test_certificate_and_key_come_together(tmp_path: Path) -> None:
    (tmp_path / "c.der").write_bytes(b"x")
    assert problems(tmp_path, user() + "certificate: c.der\n") == [
        "12: opcua_server.private_key: give both certificate and private_key, or neither"
    ]
    assert problems(tmp_path, user() + "certificate: missing.der\nprivate_key: k.pem\n") == [
        f"14: opcua_server.certificate: file not found: {tmp_path}/missing.der",
        f"15: opcua_server.private_key: file not found: {tmp_path}/k.pem",
    ]


def test_bounds_and_formats(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        user()
        + "endpoint: http://host:4840\nlocal_lease_s: 1\nstale_after_s: 0\n"
        + "arbitration: cloud_first\nnamespace_uri: not a uri\n",
    )
    assert found[0].startswith("14: opcua_server.endpoint: 'http://host:4840' is not opc.tcp://")
    assert found[1] == "15: opcua_server.local_lease_s: should be greater than or equal to 10"
    assert found[2] == "16: opcua_server.stale_after_s: should be greater than or equal to 0.1"
    assert found[3].startswith("17: opcua_server.arbitration: should be 'cloud_priority', ")
    assert found[4].startswith("18: opcua_server.namespace_uri: ")
    same = problems(tmp_path, user() + "namespace_uri: urn:x\napplication_uri: urn:x\n")
    assert same == [
        "14: opcua_server.namespace_uri: must differ from application_uri (that is namespace 1)"
    ]


def test_state_paths(tmp_path: Path) -> None:
    cfg = load(tmp_path, user())
    paths = cfg.state_paths(tmp_path / "state")
    base = tmp_path / "state" / "opcua"
    assert (paths.certificate, paths.private_key, paths.generate) == (
        base / "server-cert.der",
        base / "server-key.pem",
        True,
    )
    assert (paths.trusted_dir, paths.rejected_dir) == (base / "trusted", base / "rejected")
    with pytest.raises(ValueError, match="--state-dir"):
        cfg.state_paths(None)

    (tmp_path / "c.der").write_bytes(b"x")
    (tmp_path / "k.pem").write_bytes(b"x")
    own = load(
        tmp_path, user() + "certificate: c.der\nprivate_key: k.pem\ntrusted_clients_dir: pki/ok\n"
    )
    paths = own.state_paths(None)  # everything given: no state dir needed
    assert (paths.certificate, paths.generate) == (tmp_path / "c.der", False)
    assert (paths.trusted_dir, paths.rejected_dir) == (
        tmp_path / "pki/ok",
        tmp_path / "pki/rejected",
    )
