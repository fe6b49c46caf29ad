"""docker-compose.yml is a valid Compose file (the Compose Specification's
JSON schema, as check-jsonschema ships it: ``vendor/compose-spec.json``), takes every secret from a
file that deploy/compose/make-secrets.sh makes, and starts in order: each
dependency is healthy or has completed."""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gridpilot.edge_agent import ConfigError, load_config
from gridpilot.workflows.constants import SEARCH_ATTRIBUTES

REPO = Path(__file__).resolve().parents[3]
COMPOSE = REPO / "docker-compose.yml"
SPEC = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
MAKE_SECRETS = REPO / "deploy" / "compose" / "make-secrets.sh"
CA_FILES = {"pki.json", "ca.pem", "ca.key"}  # what `gridpilot pki init` writes
SECRET_WORDS = re.compile(r"PASSWORD|PASSWD|PWD|SECRET|TOKEN|_KEY\b", re.IGNORECASE)
ONE_SHOTS = {"migrate", "temporal-setup", "enroll-sim"}
EXPECTED = {
    "timescaledb",
    "temporal-db",
    "temporal",
    "temporal-ui",
    "temporal-setup",
    "migrate",
    "enroll-sim",
    "headend",
    "sim-agent",
    "prometheus",
    "grafana",
    "otel-collector",
}


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def schema_errors(doc: dict[str, Any]) -> list[str]:
    schema = json.loads(SPEC.read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator_cls(schema).iter_errors(doc)
    ]


def test_compose_file_follows_the_compose_specification() -> None:
    assert schema_errors(compose()) == []


def test_the_schema_check_can_fail() -> None:
    broken = copy.deepcopy(compose())
    broken["services"]["headend"]["depends_on"]["migrate"]["condition"] = "service_done"
    broken["services"]["headend"]["healthcheck"]["interval"] = 10
    assert len(schema_errors(broken)) >= 2


def test_the_stack_has_its_services() -> None:
    assert set(compose()["services"]) == EXPECTED


def test_dependencies_wait_for_healthy_or_completed() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for dep, how in service.get("depends_on", {}).items():
            condition = how["condition"]
            if dep in ONE_SHOTS:
                assert condition == "service_completed_successfully", (name, dep)
            else:
                assert condition == "service_healthy", (name, dep)
                assert "test" in services[dep].get("healthcheck", {}), dep
    for name in ONE_SHOTS:
        assert services[name]["restart"] == "no", name
    headend_check = " ".join(services["headend"]["healthcheck"]["test"])
    assert "/readyz" in headend_check


def test_secrets_come_from_files_that_make_secrets_makes() -> None:
    doc = compose()
    script = MAKE_SECRETS.read_text()
    (passwords,) = re.findall(r"^for name in ([\w -]+); do$", script, re.MULTILINE)
    for name, secret in doc["secrets"].items():
        path = Path(secret["file"])
        assert path.parts[:3] == ("deploy", "compose", "secrets"), name
        rel = Path(*path.parts[3:])
        if rel.parts[0] == "pki":  # the script tests for each certificate it issues
            made = rel.with_name("ca.pem") if rel.name in CA_FILES else rel.with_suffix(".pem")
            assert f"secrets/{made}" in script, f"{name}: {rel} is not made"
        else:
            assert str(rel) in passwords.split(), f"{name}: {rel} is not made"
    assert "deploy/compose/secrets/" in (REPO / ".gitignore").read_text().splitlines()
    for name, service in doc["services"].items():
        for secret in service.get("secrets", []):
            source = secret["source"] if isinstance(secret, dict) else secret
            assert source in doc["secrets"], (name, secret)


def test_the_headend_can_sign_enrolling_gateways() -> None:
    """GRIDPILOT_PKI_DIR holds the three files `gridpilot pki init` makes,
    from the same CA the gRPC server trusts."""
    doc = compose()
    headend = doc["services"]["headend"]
    pki_dir = headend["environment"]["GRIDPILOT_PKI_DIR"]
    mounted = {
        Path(s["target"]).name: s["source"]
        for s in headend["secrets"]
        if isinstance(s, dict) and s["target"].startswith(f"{pki_dir}/")
    }
    assert set(mounted) == CA_FILES
    for target, source in mounted.items():
        assert doc["secrets"][source]["file"] == f"./deploy/compose/secrets/pki/{target}"
    assert mounted["ca.pem"] == "grpc_ca"


def test_no_secret_is_inline() -> None:
    for name, service in compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_WORDS.search(key) and not key.endswith("_FILE"):
                assert str(value).startswith("/run/secrets/"), (name, key)
            if key.endswith("_FILE"):
                assert str(value).startswith("/run/secrets/"), (name, key)
        command = " ".join(map(str, service.get("command") or [])) + " ".join(
            map(str, service.get("entrypoint") or [])
        )
        assert not re.search(r"password\s*[=:]\s*\w", command, re.IGNORECASE), name


def test_bind_mounted_files_exist() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), (name, source)


def test_temporal_setup_registers_every_search_attribute() -> None:
    command = " ".join(compose()["services"]["temporal-setup"]["command"])
    (names,) = re.findall(r"for a in ([\w ]+); do", command)
    assert set(names.split()) == {key.name for key in SEARCH_ATTRIBUTES}


def test_simulated_site_config_is_valid_but_for_the_secret_files() -> None:
    doc = compose()
    agent = doc["services"]["sim-agent"]
    (mount,) = [v for v in agent["volumes"] if v.endswith(":/etc/gridpilot/site.yaml:ro")]
    with pytest.raises(ConfigError) as caught:
        load_config(REPO / mount.split(":")[0])
    mounted = {f"/run/secrets/{s}" for s in agent["secrets"]}
    for problem in caught.value.problems:
        assert problem.message.startswith("file not found: "), problem
        assert problem.message.removeprefix("file not found: ") in mounted, problem
    assert len(caught.value.problems) == 3


def test_headend_and_agent_send_their_traces_to_the_collector() -> None:
    """The OTLP endpoint they are given is one the collector's traces pipeline receives on."""
    services = compose()["services"]
    root = COMPOSE.parent
    mount = next(v for v in services["otel-collector"]["volumes"] if "otel-collector" in v)
    config = yaml.safe_load((root / mount.split(":")[0]).read_text())
    pipeline = config["service"]["pipelines"]["traces"]
    assert "otlp" in pipeline["receivers"] and pipeline["exporters"]
    http = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    for name in ("headend", "sim-agent"):
        endpoint = services[name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
        assert endpoint == f"http://otel-collector:{http.rsplit(':', 1)[1]}", name
