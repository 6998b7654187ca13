"""Kubernetes manifests: schema-valid for a pinned version, and wired the way the gateway needs."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from gateway.units import parse_size
from tests.deploy.tools import DEPLOY, known_settings, missing

KUBE = DEPLOY / "kubernetes"
# The oldest Kubernetes minor still commonly run; manifests must work there.
KUBERNETES_VERSION = "1.31.0"
BASE_MEMORY = 200 * 1024 * 1024  # process without buffers: interpreter, libraries, TLS
EXAMPLES = {"secret.example.yaml"}


def validator() -> ModuleType:
    try:
        import kubernetes_validate.utils as utils
    except ImportError:
        missing("kubernetes-validate")
        raise AssertionError("unreachable") from None
    return utils


def documents(path: Path) -> list[dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert docs, f"{path.name} is empty"
    return docs


def manifest_files() -> list[Path]:
    return sorted(p for p in KUBE.glob("*.yaml") if p.name != "kustomization.yaml")


def kustomization() -> dict[str, Any]:
    data = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    assert isinstance(data, dict)
    return data


def applied() -> dict[str, dict[str, Any]]:
    """kind -> the one resource of that kind that kustomize applies."""
    by_kind: dict[str, dict[str, Any]] = {}
    for name in kustomization()["resources"]:
        for doc in documents(KUBE / name):
            assert doc["kind"] not in by_kind, f"two {doc['kind']} resources"
            by_kind[doc["kind"]] = doc
    return by_kind


def container() -> dict[str, Any]:
    (only,) = applied()["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert isinstance(only, dict)
    return only


def quantity(text: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", text)
    assert match, f"use a binary memory quantity, got {text!r}"
    return int(match.group(1)) * units[match.group(2)]


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_manifest_is_valid_for_pinned_kubernetes(path: Path) -> None:
    utils = validator()
    for doc in documents(path):
        assert "namespace" not in doc["metadata"], "the namespace is set by kustomization.yaml"
        version = utils.validate(doc, KUBERNETES_VERSION, strict=True)
        assert version == "1.31"


def test_validator_rejects_a_typo() -> None:
    utils = validator()
    doc = documents(KUBE / "service.yaml")[0]
    doc["spec"]["portz"] = doc["spec"].pop("ports")
    with pytest.raises(utils.ValidationError):
        utils.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_examples() -> None:
    data = kustomization()
    assert data["kind"] == "Kustomization"
    assert data["namespace"] == "upload-gateway"
    listed = set(data["resources"])
    on_disk = {p.name for p in manifest_files()}
    assert listed == on_disk - EXAMPLES
    assert not listed & EXAMPLES
    assert {
        "Deployment",
        "Service",
        "Ingress",
        "ConfigMap",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    } <= set(applied())
    assert "Secret" not in applied()
    assert [image["name"] for image in data["images"]] == [container()["image"]]


def test_probes_point_at_health_endpoints() -> None:
    c = container()
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    (port,) = c["ports"]
    assert port["containerPort"] == 8000
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] in (port["name"], 8000)


def test_memory_covers_buffer_budget_plus_base() -> None:
    config = applied()["ConfigMap"]["data"]
    budget = parse_size(config["GATEWAY_BUFFER_MEMORY"])
    resources = container()["resources"]
    assert quantity(resources["limits"]["memory"]) >= budget + BASE_MEMORY
    assert quantity(resources["requests"]["memory"]) >= budget + BASE_MEMORY
    assert quantity(resources["requests"]["memory"]) <= quantity(resources["limits"]["memory"])
    assert resources["requests"]["cpu"] == "500m"


def test_deployment_shape() -> None:
    deployment = applied()["Deployment"]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] == 3
    assert pod["terminationGracePeriodSeconds"] >= 120
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's USER
    c = container()
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= spec["template"]["metadata"]["labels"].items()
    for kind in ("Service", "PodDisruptionBudget"):
        doc = applied()[kind]
        got = doc["spec"]["selector"]
        assert got.get("matchLabels", got) == selector, kind
    hpa = applied()["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert {m["resource"]["name"] for m in hpa["metrics"]} == {"cpu", "memory"}
    assert hpa["minReplicas"] >= 2


def test_environment_names_are_known_and_secrets_come_from_the_secret() -> None:
    settings = known_settings()
    config = applied()["ConfigMap"]["data"]
    c = container()
    assert c["envFrom"] == [{"configMapRef": {"name": applied()["ConfigMap"]["metadata"]["name"]}}]
    names = list(config) + [e["name"] for e in c["env"]]
    for name in names:
        assert name in settings or name.startswith("AWS_"), f"unknown variable {name}"
    by_name = {e["name"]: e for e in c["env"]}
    for name in (
        "GATEWAY_SECRET",
        "GATEWAY_STAFF_TOKEN",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "GATEWAY_ZENDESK_OAUTH_TOKEN",
        "GATEWAY_JIRA_API_TOKEN",
        "GATEWAY_FRESHDESK_API_KEY",
        "GATEWAY_SERVICENOW_PASSWORD",
        "GATEWAY_SERVICENOW_OAUTH_TOKEN",
    ):
        ref = by_name[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "upload-gateway" and ref["key"] == name
        assert name not in config
    assert "optional" not in by_name["GATEWAY_SECRET"]["valueFrom"]["secretKeyRef"]
    assert not any("value" in e for e in c["env"]), "literal values belong in the ConfigMap"


SECRET_WORDS = re.compile(r"(SECRET|TOKEN|PASSWORD|ACCESS_KEY)", re.IGNORECASE)


def test_no_secret_values_in_applied_manifests() -> None:
    for name in kustomization()["resources"]:
        text = (KUBE / name).read_text()
        assert not re.search(r"AKIA[0-9A-Z]{16}", text), name
        for doc in documents(KUBE / name):
            assert doc["kind"] != "Secret", name
            if doc["kind"] == "ConfigMap":
                for key in doc["data"]:
                    assert not SECRET_WORDS.search(key), f"{key} belongs in the Secret"
    example = documents(KUBE / "secret.example.yaml")[0]
    assert example["kind"] == "Secret"
    assert set(example["stringData"].values()) == {"CHANGE-ME"}
    assert "data" not in example or all(
        base64.b64decode(v) == b"CHANGE-ME" for v in example["data"].values()
    )


def test_ingress_streams_large_uploads() -> None:
    ingress = applied()["Ingress"]
    notes = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert notes[prefix + "proxy-body-size"] == "0"
    assert notes[prefix + "proxy-request-buffering"] == "off"
    assert notes[prefix + "proxy-http-version"] == "1.1"
    assert int(notes[prefix + "proxy-read-timeout"]) >= 3600
    assert int(notes[prefix + "proxy-send-timeout"]) >= 3600
    assert not any("affinity" in key for key in notes), "no sticky sessions are needed"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == applied()["Service"]["metadata"]["name"]
