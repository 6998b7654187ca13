"""deploy/compose.yaml: the local stack's services and the gateway's wiring."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from tests.deploy.tools import BOTO3_ENV, DEPLOY, ROOT, known_settings

COMPOSE = DEPLOY / "compose.yaml"


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"no service {name}"
    svc = services[name]
    assert isinstance(svc, dict)
    return svc


def interpolated(names: set[str], text: str) -> set[str]:
    return {name for name in names if re.search(r"\$\{" + name + r"[:}?-]", text)}


def test_services_present() -> None:
    assert set(compose()["services"]) == {"gateway", "seaweedfs", "create-bucket", "clamd"}
    assert service("seaweedfs")["image"].startswith("chrislusf/seaweedfs:")
    assert service("clamd")["image"].startswith("clamav/clamav:")
    for name, svc in compose()["services"].items():
        image = svc.get("image", "")
        assert not image.endswith(":latest") and (":" in image), f"pin the image of {name}"


def test_gateway_waits_for_bucket_and_clamd() -> None:
    depends = service("gateway")["depends_on"]
    assert depends["create-bucket"]["condition"] == "service_completed_successfully"
    assert depends["clamd"]["condition"] == "service_healthy"
    assert service("create-bucket")["restart"] == "no"
    assert "seaweedfs" in service("create-bucket")["depends_on"]


def test_gateway_environment() -> None:
    gateway = service("gateway")
    env = gateway["environment"]
    assert env["GATEWAY_STORAGE"] == "s3"
    assert env["GATEWAY_CLAMD"] == "tcp://clamd:3310"
    assert env["AWS_ENDPOINT_URL_S3"] == "http://seaweedfs:8333"
    for name in (
        "GATEWAY_S3_BUCKET",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "GATEWAY_SECRET",
        "GATEWAY_STAFF_TOKEN",
        "GATEWAY_PUBLIC_URL",
    ):
        assert env.get(name), name
    # The two real secrets come from deploy/.env and are required.
    assert env["GATEWAY_SECRET"].startswith("${GATEWAY_SECRET:?")
    assert env["GATEWAY_STAFF_TOKEN"].startswith("${GATEWAY_STAFF_TOKEN:?")
    settings = known_settings()
    for name in env:
        assert name in settings or name in BOTO3_ENV, f"unknown variable {name}"
    # Every ticket system can be chosen from deploy/.env alone.
    for system in ("ZENDESK", "JIRA", "FRESHDESK", "SERVICENOW"):
        passed = {n for n in env if n.startswith(f"GATEWAY_{system}_")}
        assert f"GATEWAY_{system}_URL" in passed and len(passed) >= 2, system
    assert gateway["build"]["context"] == ".."
    assert (DEPLOY / gateway["build"]["context"] / gateway["build"]["dockerfile"]).is_file()
    assert any(port.endswith(":8000") for port in gateway["ports"])
    assert any(v.endswith(":/data") for v in gateway["volumes"])


def test_bucket_job_and_gateway_agree() -> None:
    gateway_env = service("gateway")["environment"]
    job_env = service("create-bucket")["environment"]
    assert job_env["BUCKET"] == gateway_env["GATEWAY_S3_BUCKET"]
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert job_env[name] == gateway_env[name]
    script = "\n".join(service("create-bucket")["command"])
    assert "create-bucket" in script and "head-bucket" in script


def test_seaweedfs_identity_matches_the_gateway_credentials() -> None:
    weed = service("seaweedfs")
    command = weed["command"]
    assert command[0] == "mini"
    assert "-master.telemetry=false" in command
    assert "-s3.port=8333" in command
    (config_flag,) = [arg for arg in command if arg.startswith("-s3.config=")]
    inside = config_flag.split("=", 1)[1]
    (mount,) = [v for v in weed["volumes"] if v.split(":")[1] == inside]
    config = json.loads((DEPLOY / mount.split(":")[0]).read_text())
    env = service("gateway")["environment"]
    keys = {
        (c["accessKey"], c["secretKey"])
        for identity in config["identities"]
        for c in identity["credentials"]
    }
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) in keys


def test_env_example_covers_the_required_variables() -> None:
    text = COMPOSE.read_text()
    example = (DEPLOY / ".env.example").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    assert required == {"GATEWAY_SECRET", "GATEWAY_STAFF_TOKEN"}
    for name in required:
        assert re.search(rf"^{name}=", example, re.MULTILINE), name
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "deploy/.env" in ignored, "deploy/.env holds secrets and must be git-ignored"
