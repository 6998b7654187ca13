"""Where request handlers find the running gateway's services."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from gateway.services import Services


def services_of(conn: HTTPConnection) -> Services:
    services: Services = conn.app.state.services
    return services
