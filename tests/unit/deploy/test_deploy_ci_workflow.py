"""The shipped CI workflow (.github/workflows/images.yml: build both image
targets, run the compose smoke test and the storage tests on the official
TimescaleDB image, on a host with Docker) is a valid GitHub Actions workflow, by
the schema check-jsonschema ships (``vendor/github-workflows.json``), builds both
targets and opts in to the container test backend."""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[3]
WORKFLOW = REPO / ".github" / "workflows" / "images.yml"
SCHEMA = (
    importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "github-workflows.json"
)


def _errors(doc: Any) -> list[str]:
    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in cls(schema).iter_errors(doc)
    ]


def _workflow() -> Any:
    # PyYAML reads the key `on` as True (YAML 1.1); GitHub reads it as "on".
    doc = yaml.safe_load(WORKFLOW.read_text())
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def test_the_images_workflow_is_a_valid_github_workflow() -> None:
    assert _errors(_workflow()) == []


def test_a_broken_workflow_fails_the_schema() -> None:
    doc = _workflow()
    doc["jobs"] = {"build": {"steps": [{"uses": 1}]}}  # no runs-on, a number for uses
    assert _errors(doc)


def test_both_image_targets_are_built() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    runs = "\n".join(
        step.get("run", "") for job in _workflow()["jobs"].values() for step in job["steps"]
    )
    assert 'docker build --target "$target"' in runs
    assert "for target in headend agent" in runs
    for target in ("headend", "agent"):
        assert f" AS {target}" in dockerfile, target  # a stage of that name


def test_a_job_runs_the_storage_tests_on_the_official_timescaledb_image() -> None:
    job = _workflow()["jobs"]["timescaledb-image"]
    assert job["env"]["GRIDPILOT_TEST_CONTAINERS"] == "1"  # else the backend skips
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    assert ".[dev]" in runs  # testcontainers
    assert "tests/integration/telemetry tests/integration/ingest" in runs
    assert "-k timescaledb-container" in runs
