"""deploy/kubernetes: every file a kustomization lists exists, and every
object of the base and of the rendered pilot overlay validates with
kubernetes-validate (its schemas ship in the wheel: offline). There is no
kustomize binary here, so the overlay is rendered by ``render`` below, which
applies only what the overlay uses (namespace, images, labels, strategic-merge
patches of maps and of lists keyed by ``name``) and refuses anything else."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

REPO = Path(__file__).resolve().parents[3]
KUBE = REPO / "deploy" / "kubernetes"
BASE = KUBE / "base"
PILOT = KUBE / "overlays" / "pilot"
COMPONENTS = KUBE / "components"
KNOWN_KEYS = {
    "apiVersion",
    "kind",
    "resources",
    "components",
    "namespace",
    "images",
    "patches",
    "labels",
}
Obj = dict[str, Any]


def kustomization(root: Path) -> Obj:
    data: Obj = yaml.safe_load((root / "kustomization.yaml").read_text())
    return data


def load(path: Path) -> list[Obj]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def merge(into: Any, patch: Any) -> Any:
    """Strategic merge as far as the overlays use it."""
    if isinstance(into, dict) and isinstance(patch, dict):
        out = dict(into)
        for key, value in patch.items():
            out[key] = merge(into[key], value) if key in into else value
        return out
    if isinstance(into, list) and isinstance(patch, list):
        if all(isinstance(x, dict) and "name" in x for x in into + patch):
            out_list = list(into)
            for item in patch:
                names = [x["name"] for x in out_list]
                if item["name"] in names:
                    i = names.index(item["name"])
                    out_list[i] = merge(out_list[i], item)
                else:
                    out_list.append(item)
            return out_list
    return patch


def key(obj: Obj) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def render(root: Path, objs: list[Obj] | None = None) -> list[Obj]:
    """The objects of a kustomization; a Component (kustomize's
    ``components:``) adds to and patches the ``objs`` of its parent."""
    k = kustomization(root)
    unknown = set(k) - KNOWN_KEYS
    assert not unknown, f"render() does not apply {unknown}: extend it or validate otherwise"
    assert (k["kind"] == "Component") == (objs is not None), root
    objs = [] if objs is None else objs
    for entry in k.get("resources", []):
        path = root / entry
        objs += render(path) if path.is_dir() else load(path)
    for entry in k.get("components", []):
        objs = render(root / entry, objs)
    by_key = {key(o): i for i, o in enumerate(objs)}
    for patch_entry in k.get("patches", []):
        assert set(patch_entry) == {"path"}, patch_entry
        for patch in load(root / patch_entry["path"]):
            assert key(patch) in by_key, f"{patch_entry['path']} patches no object: {key(patch)}"
            i = by_key[key(patch)]
            objs[i] = merge(objs[i], patch)
    for obj in objs:
        for labels in k.get("labels", []):
            obj["metadata"].setdefault("labels", {}).update(labels["pairs"])
        if "namespace" in k:
            obj["metadata"]["namespace"] = k["namespace"]
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []):
            for image in k.get("images", []):
                if container["image"].split(":")[0] == image["name"]:
                    name = image.get("newName", image["name"])
                    container["image"] = f"{name}:{image.get('newTag', 'latest')}"
    return objs


def validate(obj: Obj) -> None:
    kubernetes_validate.validate(obj, latest_version(), strict=True)


def test_every_file_a_kustomization_lists_exists() -> None:
    for root in (BASE, PILOT, *sorted(COMPONENTS.iterdir())):
        k = kustomization(root)
        listed = list(k.get("resources", [])) + [p["path"] for p in k.get("patches", [])]
        listed += k.get("components", [])
        assert listed, root
        for entry in listed:
            assert (root / entry).exists(), f"{root}: {entry}"
        on_disk = {p.name for p in root.glob("*.yaml")} - {"kustomization.yaml"}
        assert on_disk <= {Path(e).name for e in listed}, f"{root}: files no one lists"


@pytest.mark.parametrize("root", [BASE, PILOT], ids=["base", "pilot"])
def test_every_rendered_manifest_validates(root: Path) -> None:
    objs = render(root)
    assert len(objs) == len(kustomization(BASE)["resources"])
    for obj in objs:
        validate(obj)


def test_validation_can_fail() -> None:
    (deployment,) = [o for o in render(BASE) if o["kind"] == "Deployment"]
    broken = copy.deepcopy(deployment)
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)


def test_pilot_overlay_sets_namespace_image_and_its_servers() -> None:
    objs = {key(o): o for o in render(PILOT)}
    assert {o["metadata"]["namespace"] for o in objs.values()} == {"gridpilot-pilot"}
    deployment = objs["Deployment", "gridpilot-headend"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/gridpilot/headend:0.1.0"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"  # kept by the patch
    config = objs["ConfigMap", "gridpilot-headend"]["data"]
    assert "db.pilot.example.com" in config["GRIDPILOT_DATABASE_URL"]
    assert config["GRIDPILOT_ENVIRONMENT"] == "production"  # kept from the base
    job = objs["Job", "gridpilot-migrate"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in job["env"]}
    assert env["GRIDPILOT_DATABASE_URL"].startswith("postgresql://gridpilot_owner@db.pilot.")
    assert env["PGPASSWORD_FILE"] == "/etc/gridpilot/db/owner-password"


def test_headend_probes_resources_and_security_context() -> None:
    objs = {key(o): o for o in render(BASE)}
    pod = objs["Deployment", "gridpilot-headend"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"requests", "limits"} <= set(container["resources"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    ids = {(e["name"], str(e.get("valueFrom"))) for e in container["env"]}
    assert ("GRIDPILOT_HEADEND_ID", str({"fieldRef": {"fieldPath": "metadata.name"}})) in ids
    job = objs["Job", "gridpilot-migrate"]["spec"]["template"]["spec"]["containers"][0]
    assert job["args"] == ["db", "upgrade"]


def test_grpc_is_plain_l4_and_only_rest_goes_through_the_ingress() -> None:
    objs = {key(o): o for o in render(BASE)}
    grpc = objs["Service", "gridpilot-grpc"]["spec"]
    assert grpc["type"] == "LoadBalancer"
    assert [p["protocol"] for p in grpc["ports"]] == ["TCP"]
    assert not any("appProtocol" in p for p in grpc["ports"])
    backends = {
        path["backend"]["service"]["name"]
        for rule in objs["Ingress", "gridpilot-http"]["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert backends == {"gridpilot-http"}
    assert ("PodDisruptionBudget", "gridpilot-headend") in objs
    assert ("NetworkPolicy", "gridpilot-headend") in objs


def test_the_pilot_headend_signs_enrolling_gateways_with_the_ca_secret() -> None:
    """The enrollment component gives GRIDPILOT_PKI_DIR the three files of a
    `gridpilot pki` directory, read-only, and keeps what the pilot patches."""
    objs = {key(o): o for o in render(PILOT)}
    pod = objs["Deployment", "gridpilot-headend"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["GRIDPILOT_PKI_DIR"] == "/etc/gridpilot/pki"
    assert "GRIDPILOT_HEADEND_ID" in env  # the base's env is kept
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == env["GRIDPILOT_PKI_DIR"]]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert {i["path"] for i in volume["secret"]["items"]} == {"pki.json", "ca.pem", "ca.key"}
    assert {v["name"] for v in pod["volumes"]} >= {"tls", "db", "tmp"}


def test_the_optional_service_monitor_scrapes_the_headends_metrics() -> None:
    """Not in kubernetes-validate's schemas (a CRD): checked against the
    objects it must match instead, on the base plus the component."""
    objs = {key(o): o for o in render(COMPONENTS / "servicemonitor", render(BASE))}
    monitor = objs["ServiceMonitor", "gridpilot-headend"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [
        o
        for o in objs.values()
        if o["kind"] == "Service" and selector.items() <= o["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in services] == ["gridpilot-http"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in services[0]["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert objs["ConfigMap", "gridpilot-headend"]["data"]["GRIDPILOT_METRICS_PUBLIC"] == "false"
    assert endpoint["bearerTokenSecret"]["key"]  # so it scrapes with a token
    for obj in objs.values():
        if obj["kind"] != "ServiceMonitor":
            validate(obj)
