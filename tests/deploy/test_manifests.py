"""The deployment files, checked offline: the Kubernetes manifests against the Kubernetes API
schemas, compose.yaml against the compose specification, and every MEMTRACE_* name they set
against the settings. (The image itself is built and run in test_container.py; the systemd
unit is verified in test_wheel.py, against the installed console script.)"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from memtrace.config import ServerSettings, Settings, setting_fields

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes" / "memtrace.yaml"
COMPOSE = ROOT / "compose.yaml"
DEPLOY_FILES = [
    ROOT / "Dockerfile",
    COMPOSE,
    ROOT / "memtrace.env.example",
    K8S,
    ROOT / "deploy" / "systemd" / "memtrace.service",
]
# Read from the environment by the code itself rather than through the settings.
ENV_ONLY = {
    "MEMTRACE_MASTER_KEY",  # memtrace/auth/crypto.py
    "MEMTRACE_DATA_DIR",  # the alias of MEMTRACE_STORAGE_DATA_DIR (memtrace/config.py)
    "MEMTRACE_URL",  # the MCP stdio server's remote mode and the SDK
    "MEMTRACE_API_KEY",
    "MEMTRACE_AGENT_ID",
}
IMAGE_UID = 10001  # the Dockerfile's memtrace user


def k8s_documents() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(K8S.read_text()) if doc]


def by_kind(kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in k8s_documents() if doc["kind"] == kind]
    return found


@pytest.mark.parametrize("version", ["1.30.0", kubernetes_validate.latest_version()])
def test_kubernetes_manifests_are_valid(version: str) -> None:
    for doc in k8s_documents():
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any error


def test_the_validator_catches_mistakes() -> None:
    deployment = copy.deepcopy(by_kind("Deployment"))
    deployment["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.30.0", strict=True)
    deployment = copy.deepcopy(by_kind("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):  # strict: unknown fields too
        kubernetes_validate.validate(deployment, "1.30.0", strict=True)


def test_kubernetes_cluster_mode_shape() -> None:
    kinds = sorted(doc["kind"] for doc in k8s_documents())
    assert kinds == ["Deployment", "PodDisruptionBudget", "Secret", "Service"]
    secret, deployment, service = by_kind("Secret"), by_kind("Deployment"), by_kind("Service")
    assert set(secret["stringData"]) == {"MEMTRACE_MASTER_KEY", "MEMTRACE_POSTGRES_URL"}
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0  # rolling restarts
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    (port,) = container["ports"]
    assert port["containerPort"] == ServerSettings().port
    assert pod["securityContext"]["runAsUser"] == IMAGE_UID
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    assert by_kind("PodDisruptionBudget")["spec"]["minAvailable"] < spec["replicas"]


def compose_schema() -> dict[str, Any]:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return dict(json.loads((vendor / "compose-spec.json").read_text()))


def test_compose_file_follows_the_compose_specification() -> None:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    document = yaml.safe_load(COMPOSE.read_text())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == []
    broken = copy.deepcopy(document)
    broken["services"]["memtrace"]["restart_policy"] = "always"
    assert list(validator.iter_errors(broken)), "the schema should refuse an unknown key"


def test_compose_runs_memtrace_with_postgres_and_arc() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert set(services) == {"memtrace", "postgres", "arc"}
    memtrace = services["memtrace"]
    assert memtrace["env_file"] == ["memtrace.env"]  # the master key, for this container only
    assert memtrace["build"]["context"] == "."
    assert "memtrace-data:/data" in memtrace["volumes"]
    assert memtrace["environment"]["MEMTRACE_POSTGRES_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in memtrace["environment"]["MEMTRACE_POSTGRES_URL"]
    assert memtrace["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert services["arc"]["image"].startswith("ghcr.io/basekick-labs/arc:")
    assert any(p.endswith(":8000") for p in services["arc"]["ports"])
    for name in ("postgres", "arc"):
        assert "env_file" not in services[name]  # the master key never reaches them


def setting_env_names() -> set[str]:
    return {f"MEMTRACE_{dotted.replace('.', '_')}".upper() for dotted, _ in setting_fields()}


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda p: p.name)
def test_every_memtrace_variable_in_the_deploy_files_exists(path: Path) -> None:
    known = setting_env_names() | ENV_ONLY
    if "postgres" not in Settings.model_fields:  # cluster mode is being built (docs/deploy.md)
        known.add("MEMTRACE_POSTGRES_URL")
    used = set(re.findall(r"\bMEMTRACE_[A-Z0-9_]+", path.read_text()))
    assert used - known == set(), f"{path.name} sets variables memtrace does not read"


def test_dockerfile_stays_engine_neutral() -> None:
    """No `# syntax=` line (BuildKit would pull a frontend image) and no BuildKit-only
    instructions, so docker, podman and buildah build it, also with no registry."""
    text = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.M | re.I)
    assert "--mount" not in text and "<<" not in text
