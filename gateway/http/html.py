"""The gateway's HTML: Jinja2 templates in ``gateway/templates``, rendered in one place.

Autoescaping is on, so every value a template prints is escaped once, there.
The partner's pages carry no inline script or style (their CSP forbids both):
the script reads its settings from ``data-`` attributes on ``#app``. What the
templates need beyond their context is here: ``asset()`` for a static file's
URL and a few filters that format sizes, times and a receipt's state.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from gateway.http import assets
from gateway.units import format_size


def when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def remaining(seconds: float) -> str:
    """``in 13 days``, ``in 5 hours``, ``in 12 minutes``: how long a link still lives."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"in {n} {unit}{'s' if n != 1 else ''}"
    return "in less than a minute"


def size(n: Any) -> str:
    """``1.2 MiB``, ``5 TiB`` (no ``.0``); a missing size is 0 B."""
    return format_size(int(n or 0)).replace(".0 ", " ")


def grouped(n: int) -> str:
    """``1,234,567``: a byte count a person can read."""
    return f"{n:,}"


def status_text(receipt: Mapping[str, Any]) -> str:
    """A received file's state, in words, from its receipt."""
    status = receipt.get("status")
    if status == "delivered":
        if receipt.get("route") == "storage":
            return "Stored, link posted on the ticket"
        return "Delivered to the ticket"
    if status == "quarantined":
        return "Held back: the virus scanner flagged this file"
    if status == "failed":
        return "Received, but posting to the ticket failed; support has been told"
    return "Received, being posted to the ticket"


def tone(receipt: Mapping[str, Any]) -> str:
    """The CSS class of a receipt's state: ``ok``, ``bad`` or ``wait``."""
    return {"delivered": "ok", "failed": "bad", "quarantined": "bad"}.get(
        str(receipt.get("status")), "wait"
    )


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gateway", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["asset"] = assets.url_for
    env.filters.update(
        when=when, iso=iso, remaining=remaining, size=size, grouped=grouped,
        status_text=status_text, tone=tone,
    )  # fmt: skip
    return env


templates = Jinja2Templates(env=_environment())


def render(name: str, **context: Any) -> str:
    """A template rendered to text (for tests and for pages built outside a request)."""
    return templates.get_template(name).render(context)


def page(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The template ``name`` as an HTML response."""
    return templates.TemplateResponse(request, name, context, status_code=status, headers=headers)
