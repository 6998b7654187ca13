"""Settings: defaults, one clear line naming the variable for every bad value, the secret."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.settings import Settings, load_settings

MiB = 1024 * 1024
SECRET = "x" * 40


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings({"GATEWAY_DATA_DIR": str(tmp_path)})
    assert settings.public_url == "http://127.0.0.1:8000"
    assert settings.public_url_explicit is False
    assert settings.storage == "file"
    assert settings.tickets == "local"
    assert settings.embedded is True
    assert settings.attachment_max == 20 * MiB == 20971520
    assert settings.max_upload == 5 * 1024**4
    assert settings.link_ttl == 14 * 86400
    assert settings.download_ttl == 30 * 86400
    assert settings.buffer_memory == 256 * MiB
    assert settings.s3_max_parts == 10_000
    assert settings.staff_token is None
    assert settings.public_comments is False
    assert (settings.min_body_rate, settings.min_body_rate_period) == (1024, 10.0)
    assert settings.busy_wait == 30.0
    assert settings.clamd is None
    assert settings.s3_bucket is None and settings.s3_prefix == ""
    assert settings.s3_checksum == "CRC32C"
    assert len(settings.secret) >= 32


def test_documented_values(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "GATEWAY_DATA_DIR": str(tmp_path),
            "GATEWAY_PUBLIC_URL": "https://files.example.com/",
            "GATEWAY_STORAGE": "s3",
            "GATEWAY_S3_BUCKET": "b",
            "GATEWAY_S3_PREFIX": "gw",
            "GATEWAY_SECRET": SECRET,
            "GATEWAY_ATTACHMENT_MAX": "1MiB",
            "GATEWAY_MAX_UPLOAD": "1TB",
            "GATEWAY_LINK_TTL": "12h",
            "GATEWAY_DOWNLOAD_TTL": "7d",
            "GATEWAY_BUFFER_MEMORY": "64MiB",
            "GATEWAY_S3_MAX_PARTS": "1000",
            "GATEWAY_STAFF_TOKEN": "staff",
            "GATEWAY_PUBLIC_COMMENTS": "true",
            "GATEWAY_CLAMD": "tcp://127.0.0.1:3310",
            "GATEWAY_S3_CHECKSUM": "CRC32",
        }
    )
    assert settings.s3_checksum == "CRC32"
    assert settings.public_url == "https://files.example.com"
    assert settings.public_url_explicit is True
    assert settings.s3_prefix == "gw/"
    assert settings.secret == SECRET.encode()
    assert settings.embedded is False
    assert (settings.attachment_max, settings.max_upload) == (MiB, 1000**4)
    assert (settings.link_ttl, settings.download_ttl) == (43200, 7 * 86400)
    assert settings.buffer_memory == 64 * MiB
    assert settings.s3_max_parts == 1000
    assert settings.public_comments is True
    assert "staff" not in repr(settings) and SECRET not in repr(settings)


BAD = [
    ("GATEWAY_STORAGE", "ftp"),
    ("GATEWAY_TICKETS", "jira"),
    ("GATEWAY_SECRET", "short"),
    ("GATEWAY_PUBLIC_URL", "ftp://x"),
    ("GATEWAY_PUBLIC_URL", "not a url"),
    ("GATEWAY_ATTACHMENT_MAX", "20 parsecs"),
    ("GATEWAY_ATTACHMENT_MAX", "-1"),
    ("GATEWAY_MAX_UPLOAD", "0"),
    ("GATEWAY_MAX_UPLOAD", "lots"),
    ("GATEWAY_BUFFER_MEMORY", "1MiB"),
    ("GATEWAY_BUFFER_MEMORY", "99999999999PiB"),
    ("GATEWAY_S3_MAX_PARTS", "0"),
    ("GATEWAY_S3_MAX_PARTS", "1"),
    ("GATEWAY_S3_MAX_PARTS", "10001"),
    ("GATEWAY_S3_MAX_PARTS", "lots"),
    ("GATEWAY_LINK_TTL", "forever"),
    ("GATEWAY_LINK_TTL", "0"),
    ("GATEWAY_DOWNLOAD_TTL", "-3d"),
    ("GATEWAY_RETENTION", "1y"),
    ("GATEWAY_PUBLIC_COMMENTS", "maybe"),
    ("GATEWAY_IDLE_TIMEOUT", "soon"),
    ("GATEWAY_LINK_CONCURRENCY", "0"),
    ("GATEWAY_LINK_CONCURRENCY", "many"),
    ("GATEWAY_MIN_BODY_RATE", "fast"),
    ("GATEWAY_MIN_BODY_RATE_PERIOD", "0"),
    ("GATEWAY_BUSY_WAIT", "-5s"),
    ("GATEWAY_LOG_FORMAT", "xml"),
    ("GATEWAY_LOG_LEVEL", "loud"),
    ("GATEWAY_CLAMD", "clamd.local"),
    ("GATEWAY_S3_SSE", "rot13"),
    ("GATEWAY_S3_CHECKSUM", "md5"),
    ("GATEWAY_S3_SSE_KMS_KEY_ID", "key-1"),
]


@pytest.mark.parametrize(("name", "value"), BAD)
def test_bad_value_names_its_variable(tmp_path: Path, name: str, value: str) -> None:
    env = {"GATEWAY_DATA_DIR": str(tmp_path), name: value}
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    message = str(info.value)
    assert name in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"GATEWAY_STORAGE": "s3", "GATEWAY_SECRET": SECRET}, "GATEWAY_S3_BUCKET"),
        ({"GATEWAY_TICKETS": "zendesk", "GATEWAY_SECRET": SECRET}, "GATEWAY_ZENDESK_URL"),
        (
            {"GATEWAY_TICKETS": "zendesk", "GATEWAY_SECRET": SECRET,
             "GATEWAY_ZENDESK_URL": "https://acme.zendesk.com"},
            "GATEWAY_ZENDESK_OAUTH_TOKEN",
        ),
        (
            {"GATEWAY_TICKETS": "zendesk", "GATEWAY_SECRET": SECRET,
             "GATEWAY_ZENDESK_URL": "https://acme.zendesk.com",
             "GATEWAY_ZENDESK_CLIENT_ID": "id"},
            "GATEWAY_ZENDESK_CLIENT_SECRET",
        ),
        (
            {"GATEWAY_TICKETS": "zendesk", "GATEWAY_SECRET": SECRET,
             "GATEWAY_ZENDESK_URL": "https://acme.zendesk.com",
             "GATEWAY_ZENDESK_EMAIL": "a@b.c"},
            "GATEWAY_ZENDESK_TOKEN",
        ),
    ],
)  # fmt: skip
def test_missing_companion_names_its_variable(
    tmp_path: Path, env: dict[str, str], name: str
) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({"GATEWAY_DATA_DIR": str(tmp_path), **env})


@pytest.mark.parametrize(
    "env",
    [
        {"GATEWAY_STORAGE": "s3", "GATEWAY_S3_BUCKET": "b"},
        {"GATEWAY_TICKETS": "zendesk", "GATEWAY_ZENDESK_URL": "https://a.zendesk.com",
         "GATEWAY_ZENDESK_OAUTH_TOKEN": "t"},
    ],
)  # fmt: skip
def test_secret_required_outside_embedded(tmp_path: Path, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="GATEWAY_SECRET"):
        load_settings({"GATEWAY_DATA_DIR": str(tmp_path), **env})
    assert not (tmp_path / "secret.key").exists()


def test_embedded_secret_created_once_private_and_reused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = load_settings({"GATEWAY_DATA_DIR": str(data)})
    path = data / "secret.key"
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first.secret) >= 32
    assert path.read_text().strip().encode() == first.secret
    second = load_settings({"GATEWAY_DATA_DIR": str(data)})
    assert second.secret == first.secret
    assert len(list(data.iterdir())) == 1


def test_explicit_secret_wins_and_writes_nothing(tmp_path: Path) -> None:
    settings = load_settings({"GATEWAY_DATA_DIR": str(tmp_path / "d"), "GATEWAY_SECRET": SECRET})
    assert settings.secret == SECRET.encode()
    assert not (tmp_path / "d").exists()


def test_blank_values_mean_default(tmp_path: Path) -> None:
    settings = load_settings({"GATEWAY_DATA_DIR": str(tmp_path), "GATEWAY_ATTACHMENT_MAX": "  "})
    assert settings.attachment_max == Settings().attachment_max


JIRA = {
    "GATEWAY_TICKETS": "jira",
    "GATEWAY_SECRET": SECRET,
    "GATEWAY_JIRA_URL": "https://acme.atlassian.net/",
    "GATEWAY_JIRA_SERVICE_DESK_ID": "4",
    "GATEWAY_JIRA_EMAIL": "gateway@acme.test",
    "GATEWAY_JIRA_API_TOKEN": "ATATT-secret-token",
}


def test_jira_settings_and_default_attachment_max(tmp_path: Path) -> None:
    settings = load_settings({"GATEWAY_DATA_DIR": str(tmp_path), **JIRA})
    assert settings.tickets == "jira" and settings.embedded is False
    assert settings.jira is not None
    assert settings.jira.url == "https://acme.atlassian.net"
    assert settings.jira.service_desk_id == "4"
    assert (settings.jira.email, settings.jira.api_token) == (
        "gateway@acme.test",
        "ATATT-secret-token",
    )
    assert "ATATT" not in repr(settings) and "ATATT" not in repr(settings.jira)
    assert settings.attachment_max == 10 * MiB
    assert settings.attachment_max_requested is None


@pytest.mark.parametrize(
    ("value", "effective", "requested"),
    [("5MiB", 5 * MiB, None), ("2GB", 2_000_000_000, None), ("5GiB", 2_000_000_000, 5 * 1024**3)],
)
def test_jira_clamps_attachment_max_to_what_it_accepts(
    tmp_path: Path, value: str, effective: int, requested: int | None
) -> None:
    env = {"GATEWAY_DATA_DIR": str(tmp_path), "GATEWAY_ATTACHMENT_MAX": value, **JIRA}
    settings = load_settings(env)
    assert (settings.attachment_max, settings.attachment_max_requested) == (effective, requested)


@pytest.mark.parametrize("name", [k for k in JIRA if k.startswith("GATEWAY_JIRA_")])
def test_jira_variables_are_required(tmp_path: Path, name: str) -> None:
    env = {k: v for k, v in JIRA.items() if k != name}
    with pytest.raises(ConfigError, match=name) as info:
        load_settings({"GATEWAY_DATA_DIR": str(tmp_path), **env})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [("GATEWAY_JIRA_SERVICE_DESK_ID", "SUP"), ("GATEWAY_JIRA_URL", "acme.atlassian.net")],
)
def test_jira_bad_values_name_their_variable(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({"GATEWAY_DATA_DIR": str(tmp_path), **JIRA, name: value})
