"""Alert rules and the dashboard only use series that gateway/metrics.py defines."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from gateway.metrics import Metrics
from tests.deploy.tools import DEPLOY

ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
DASHBOARD = DEPLOY / "grafana" / "gateway-dashboard.json"

# Series Prometheus makes itself rather than scraping them from the gateway.
SYNTHETIC = {"up"}
PROMQL_WORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions and labels left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"(?<![\w.])(\d+(ms|[smhdwy]))+\b", " ", text)  # durations: 5m, 1h30m
    text = re.sub(r"(?<![\w.])\d+(\.\d+)?([eE][-+]?\d+)?", " ", text)
    names: set[str] = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group(0).lower() not in PROMQL_WORDS:
            names.add(match.group(0))
    return names


def defined() -> set[str]:
    return Metrics().series_names() | SYNTHETIC


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS.read_text())
    assert isinstance(data, dict) and list(data) == ["groups"]
    found: list[dict[str, Any]] = []
    for group in data["groups"]:
        assert group["name"] and group["rules"]
        found.extend(group["rules"])
    return found


def dashboard_exprs() -> list[str]:
    data = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in data["panels"] for target in panel.get("targets", [])]
    for variable in data["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            inner = re.fullmatch(r"label_values\((\w+),\s*\w+\)", query["query"])
            assert inner, query
            exprs.append(inner.group(1))
    return exprs


def test_the_name_extractor_sees_through_promql() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, op) (rate(gateway_storage_request_seconds_bucket"
        '{job=~"$job", op!="x"}[$__rate_interval]))) / clamp_min(up offset 5m, 1e-9) > bool 0'
    )
    assert metric_names(expr) == {"gateway_storage_request_seconds_bucket", "up"}


def test_alert_rules_have_the_expected_structure() -> None:
    found = rules()
    names = [rule["alert"] for rule in found]
    assert len(names) == len(set(names))
    for expected in (
        "GatewayDeliveriesStuck",
        "GatewayStorageErrors",
        "GatewayBufferSaturated",
        "GatewayNotReady",
    ):
        assert expected in names
    for rule in found:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["annotations"]["summary"]
        assert re.fullmatch(r"\d+[smh]", rule["for"])
        assert rule["expr"].count("(") == rule["expr"].count(")")


def test_alert_thresholds() -> None:
    by_name = {rule["alert"]: rule for rule in rules()}
    stuck = by_name["GatewayDeliveriesStuck"]["expr"]
    assert "gateway_delivery_oldest_age_seconds" in stuck and "> 900" in stuck
    saturated = by_name["GatewayBufferSaturated"]
    assert "gateway_buffer_bytes_in_use" in saturated["expr"]
    assert "gateway_buffer_bytes_limit" in saturated["expr"]
    assert "> 0.9" in saturated["expr"] and saturated["for"] == "5m"


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_alert_uses_only_defined_series(rule: dict[str, Any]) -> None:
    names = metric_names(rule["expr"])
    assert names, "an alert that selects no series"
    assert names <= defined(), names - defined()


def test_dashboard_uses_only_defined_series() -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    used: set[str] = set()
    for expr in exprs:
        names = metric_names(expr)
        assert names, expr
        assert names <= defined(), (expr, names - defined())
        used |= names
    # Every gateway series appears on the dashboard somewhere.
    families = {n.removesuffix("_bucket") for n in used}
    for name in Metrics().series_names():
        if name.startswith("gateway_") and not name.endswith(("_created", "_sum", "_count")):
            assert name.removesuffix("_bucket") in families, f"{name} is on no panel"


def test_dashboard_is_importable() -> None:
    data = json.loads(DASHBOARD.read_text())
    assert data["uid"] and data["title"]
    ids = [panel["id"] for panel in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in data["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert panel["targets"], panel["title"]
