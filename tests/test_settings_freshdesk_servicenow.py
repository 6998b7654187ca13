"""Settings for GATEWAY_TICKETS=freshdesk and =servicenow: required values, auth, the clamp."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.settings import load_settings

SECRET = "x" * 40
MiB = 1024 * 1024


def env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"GATEWAY_DATA_DIR": str(tmp_path), "GATEWAY_SECRET": SECRET, **values}


def test_freshdesk(tmp_path: Path) -> None:
    settings = load_settings(
        env(
            tmp_path,
            GATEWAY_TICKETS="freshdesk",
            GATEWAY_FRESHDESK_URL="https://acme.freshdesk.com/",
            GATEWAY_FRESHDESK_API_KEY="k3y",
        )
    )
    assert settings.freshdesk is not None and settings.servicenow is None
    assert settings.freshdesk.url == "https://acme.freshdesk.com"
    assert settings.freshdesk.api_key == "k3y"
    assert "k3y" not in repr(settings) and "k3y" not in repr(settings.freshdesk)
    assert settings.embedded is False
    # The default 20 MiB is more than Freshdesk's 20 MB a note: clamped, and said so.
    assert settings.attachment_max == 20_000_000
    assert settings.attachment_max_requested == 20 * MiB


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({}, "GATEWAY_FRESHDESK_URL"),
        ({"GATEWAY_FRESHDESK_URL": "https://a.freshdesk.com"}, "GATEWAY_FRESHDESK_API_KEY"),
        (
            {"GATEWAY_FRESHDESK_URL": "acme.freshdesk.com", "GATEWAY_FRESHDESK_API_KEY": "k"},
            "GATEWAY_FRESHDESK_URL",
        ),
    ],
)
def test_freshdesk_refusals_name_the_variable(
    tmp_path: Path, values: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env(tmp_path, GATEWAY_TICKETS="freshdesk", **values))
    assert str(info.value).startswith(f"{variable}:")


@pytest.mark.parametrize(
    ("auth", "kind"),
    [
        ({"GATEWAY_SERVICENOW_USER": "u", "GATEWAY_SERVICENOW_PASSWORD": "p4ss"}, "basic"),
        ({"GATEWAY_SERVICENOW_OAUTH_TOKEN": "t0ken"}, "oauth"),
    ],
)
def test_servicenow(tmp_path: Path, auth: dict[str, str], kind: str) -> None:
    settings = load_settings(
        env(
            tmp_path,
            GATEWAY_TICKETS="servicenow",
            GATEWAY_SERVICENOW_URL="https://acme.service-now.com",
            GATEWAY_ATTACHMENT_MAX="5MiB",
            **auth,
        )
    )
    assert settings.servicenow is not None
    assert settings.servicenow.table == "incident"
    assert settings.servicenow.auth_kind == kind
    assert "p4ss" not in repr(settings) and "t0ken" not in repr(settings)
    assert (settings.attachment_max, settings.attachment_max_requested) == (5 * MiB, None)


def test_servicenow_table_and_the_1024_mb_clamp(tmp_path: Path) -> None:
    settings = load_settings(
        env(
            tmp_path,
            GATEWAY_TICKETS="servicenow",
            GATEWAY_SERVICENOW_URL="https://acme.service-now.com",
            GATEWAY_SERVICENOW_TABLE="sn_customerservice_case",
            GATEWAY_SERVICENOW_OAUTH_TOKEN="t",
            GATEWAY_ATTACHMENT_MAX="2GiB",
        )
    )
    assert settings.servicenow is not None
    assert settings.servicenow.table == "sn_customerservice_case"
    assert settings.attachment_max == 1024 * MiB
    assert settings.attachment_max_requested == 2048 * MiB


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({}, "GATEWAY_SERVICENOW_URL"),
        ({"GATEWAY_SERVICENOW_URL": "https://a.service-now.com"}, "GATEWAY_SERVICENOW_OAUTH_TOKEN"),
        (
            {"GATEWAY_SERVICENOW_URL": "https://a.service-now.com", "GATEWAY_SERVICENOW_USER": "u"},
            "GATEWAY_SERVICENOW_PASSWORD",
        ),
        (
            {
                "GATEWAY_SERVICENOW_URL": "https://a.service-now.com",
                "GATEWAY_SERVICENOW_PASSWORD": "p",
            },
            "GATEWAY_SERVICENOW_USER",
        ),
        (
            {
                "GATEWAY_SERVICENOW_URL": "https://a.service-now.com",
                "GATEWAY_SERVICENOW_OAUTH_TOKEN": "t",
                "GATEWAY_SERVICENOW_TABLE": "incident^active=true",
            },
            "GATEWAY_SERVICENOW_TABLE",
        ),
    ],
)
def test_servicenow_refusals_name_the_variable(
    tmp_path: Path, values: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env(tmp_path, GATEWAY_TICKETS="servicenow", **values))
    assert str(info.value).startswith(f"{variable}:")


def test_unknown_ticket_system_lists_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env(tmp_path, GATEWAY_TICKETS="otrs"))
    assert "freshdesk" in str(info.value) and "servicenow" in str(info.value)
