"""docs/operations.md: the lifecycle rule it tells operators to apply is valid and safe."""

from __future__ import annotations

import json
import re

from gateway.settings import Settings
from tests.deploy.tools import ROOT

DOC = ROOT / "docs" / "operations.md"


def test_lifecycle_rule_parses_and_outlives_upload_links() -> None:
    text = DOC.read_text()
    match = re.search(r"<<'JSON'\n(.*?)\nJSON\n", text, re.DOTALL)
    assert match, "the lifecycle JSON heredoc is missing"
    config = json.loads(match.group(1))
    (rule,) = config["Rules"]
    assert rule["Status"] == "Enabled"
    assert "Prefix" in rule["Filter"]
    days = rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
    assert days * 86400 > Settings().link_ttl, "the backstop must not abort live uploads"
    assert "put-bucket-lifecycle-configuration" in text
    assert "--lifecycle-configuration file://lifecycle.json" in text


def test_walkthrough_commands_match_the_deploy_files() -> None:
    text = DOC.read_text()
    assert "docker compose -f deploy/compose.yaml exec gateway gateway link --ticket 123" in text
    assert "kubectl apply -k deploy/kubernetes" in text
    assert "cp deploy/.env.example deploy/.env" in text
    for path in (
        "deploy/compose.yaml",
        "deploy/.env.example",
        "deploy/kubernetes",
        "deploy/prometheus/alerts.yaml",
        "deploy/grafana/gateway-dashboard.json",
    ):
        assert (ROOT / path).exists(), path
        assert path in text, path
