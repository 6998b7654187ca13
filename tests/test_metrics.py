from __future__ import annotations

import re

from gateway.metrics import CONTENT_TYPE, PROTOCOLS, Metrics

EXPECTED = [
    "gateway_uploads_started_total",
    "gateway_uploads_finished_total",
    "gateway_uploads_failed_total",
    "gateway_bytes_received_total",
    "gateway_uploads_in_flight",
    "gateway_buffer_bytes_in_use",
    "gateway_buffer_bytes_limit",
    "gateway_deliveries_pending",
    "gateway_delivery_oldest_age_seconds",
    "gateway_deliveries_total",
    "gateway_storage_request_seconds",
    "gateway_storage_errors_total",
    "gateway_ticket_request_seconds",
    "gateway_ticket_errors_total",
    "gateway_scans_total",
    "gateway_downloads_total",
    "gateway_download_bytes_total",
    "gateway_links_minted_total",
]


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in exposition text; fails if it is absent."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)", line)
        assert match, line
        got_labels = ",".join(sorted((match.group(2) or "").split(","))) if match.group(2) else ""
        if match.group(1) == name and got_labels == want:
            return float(match.group(3))
    raise AssertionError(f"no sample {name}{{{want}}} in:\n{text}")


def test_render_declares_every_series() -> None:
    body, content_type = Metrics().render()
    text = body.decode()
    assert content_type == CONTENT_TYPE
    assert content_type.startswith("text/plain")
    for name in EXPECTED:
        assert f"# TYPE {name} " in text, name
    assert "# TYPE gateway_storage_request_seconds histogram" in text
    assert "# TYPE gateway_uploads_in_flight gauge" in text


def test_series_names_cover_expected() -> None:
    names = Metrics().series_names()
    for name in EXPECTED:
        assert name in names or f"{name}_bucket" in names, name
    assert "gateway_storage_request_seconds_bucket" in names
    assert "gateway_no_such_thing" not in names


def test_fixed_label_values_exist_at_zero() -> None:
    text = Metrics().render()[0].decode()
    for protocol in PROTOCOLS:
        assert sample(text, "gateway_uploads_started_total", protocol=protocol) == 0
        assert (
            sample(text, "gateway_uploads_finished_total", protocol=protocol, route="storage") == 0
        )
    assert sample(text, "gateway_deliveries_total", result="retried") == 0
    assert sample(text, "gateway_scans_total", result="infected") == 0
    assert sample(text, "gateway_links_minted_total", via="api") == 0


def test_counters_gauges_and_histograms_move() -> None:
    m = Metrics()
    m.uploads_started.labels("tus").inc()
    m.uploads_finished.labels("tus", "storage").inc()
    m.uploads_failed.labels("put", "incomplete_body").inc()
    m.bytes_received.labels("tus").inc(1024)
    m.uploads_in_flight.inc()
    m.buffer_bytes_limit.set(256 * 1024 * 1024)
    m.buffer_bytes_in_use.set(10 * 1024 * 1024)
    m.deliveries_pending.set(3)
    m.delivery_oldest_age.set(42.5)
    m.deliveries.labels("delivered").inc(2)
    m.storage_request_seconds.labels("upload_part").observe(0.3)
    m.storage_errors.labels("upload_part").inc()
    m.ticket_request_seconds.labels("post_comment").observe(0.2)
    m.ticket_errors.labels("post_comment", "429").inc()
    m.scans.labels("clean").inc()
    m.downloads.inc()
    m.download_bytes.inc(4096)
    m.links_minted.labels("cli").inc()
    m.ready.labels("storage").set(1)

    text = m.render()[0].decode()
    assert sample(text, "gateway_uploads_started_total", protocol="tus") == 1
    assert sample(text, "gateway_uploads_started_total", protocol="put") == 0
    assert sample(text, "gateway_uploads_finished_total", protocol="tus", route="storage") == 1
    assert (
        sample(text, "gateway_uploads_failed_total", protocol="put", reason="incomplete_body") == 1
    )
    assert sample(text, "gateway_bytes_received_total", protocol="tus") == 1024
    assert sample(text, "gateway_uploads_in_flight") == 1
    assert sample(text, "gateway_buffer_bytes_in_use") == 10 * 1024 * 1024
    assert sample(text, "gateway_buffer_bytes_limit") == 256 * 1024 * 1024
    assert sample(text, "gateway_deliveries_pending") == 3
    assert sample(text, "gateway_delivery_oldest_age_seconds") == 42.5
    assert sample(text, "gateway_deliveries_total", result="delivered") == 2
    assert sample(text, "gateway_storage_request_seconds_count", op="upload_part") == 1
    assert sample(text, "gateway_storage_request_seconds_bucket", op="upload_part", le="0.5") == 1
    assert sample(text, "gateway_storage_request_seconds_bucket", op="upload_part", le="0.25") == 0
    assert sample(text, "gateway_storage_errors_total", op="upload_part") == 1
    assert sample(text, "gateway_ticket_request_seconds_sum", op="post_comment") == 0.2
    assert sample(text, "gateway_ticket_errors_total", op="post_comment", status="429") == 1
    assert sample(text, "gateway_scans_total", result="clean") == 1
    assert sample(text, "gateway_downloads_total") == 1
    assert sample(text, "gateway_download_bytes_total") == 4096
    assert sample(text, "gateway_links_minted_total", via="cli") == 1
    assert sample(text, "gateway_ready", check="storage") == 1


def test_instances_are_independent() -> None:
    a, b = Metrics(process=False), Metrics(process=False)
    a.downloads.inc(5)
    assert sample(a.render()[0].decode(), "gateway_downloads_total") == 5
    assert sample(b.render()[0].decode(), "gateway_downloads_total") == 0
    assert "process_resident_memory_bytes" not in a.render()[0].decode()
