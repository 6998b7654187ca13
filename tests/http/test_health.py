"""Liveness and readiness, including storage that is not there."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.gateway import GatewayProcess, free_port, gateway_env, start_gateway
from tests.support.seaweed import SeaweedServer


def test_healthz_and_readyz(gateway_file: GatewayProcess) -> None:
    health = httpx.get(f"{gateway_file.url}/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = httpx.get(f"{gateway_file.url}/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"storage": "ok", "tickets": "ok"}


def test_readyz_on_s3(gateway_s3: GatewayProcess) -> None:
    ready = httpx.get(f"{gateway_s3.url}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["storage"] == "ok"


def test_readyz_503_when_the_bucket_does_not_exist(tmp_path: Path, seaweed: SeaweedServer) -> None:
    env = gateway_env(
        tmp_path, GATEWAY_STORAGE="s3", GATEWAY_S3_BUCKET="no-such-bucket-here", **seaweed.env()
    )
    proc = start_gateway(tmp_path, env)
    try:
        assert httpx.get(f"{proc.url}/healthz").status_code == 200  # alive, not ready
        ready = httpx.get(f"{proc.url}/readyz", timeout=30)
        assert ready.status_code == 503
        assert ready.json()["status"] == "not ready"
        assert ready.json()["checks"]["storage"] != "ok"
        assert ready.json()["checks"]["tickets"] == "ok"
    finally:
        proc.kill()


def test_readyz_503_when_s3_is_down(tmp_path: Path, seaweed: SeaweedServer) -> None:
    env = gateway_env(tmp_path, GATEWAY_STORAGE="s3", GATEWAY_S3_BUCKET="b", **seaweed.env())
    env["AWS_ENDPOINT_URL_S3"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    proc = start_gateway(tmp_path, env)
    try:
        ready = httpx.get(f"{proc.url}/readyz", timeout=30)
        assert ready.status_code == 503
        assert ready.json()["checks"]["storage"] != "ok"
        assert env["AWS_SECRET_ACCESS_KEY"] not in ready.text
    finally:
        proc.kill()
