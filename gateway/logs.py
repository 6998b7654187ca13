"""Logging: JSON lines for machines, plain lines for a terminal."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
import sys
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.settings import Settings

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# The client's address (as uvicorn's proxy-headers handling sees it), for every line of a request.
client_address: contextvars.ContextVar[str | None] = contextvars.ContextVar("client", default=None)

# Upload and download tokens are credentials: logs keep only their first 8 characters.
_TOKEN_IN_PATH = re.compile(r"/(u|files)/([A-Za-z0-9_-]{8})[A-Za-z0-9_-]{8,}")
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def redact(text: str) -> str:
    return _TOKEN_IN_PATH.sub(r"/\1/\2…", text)


class RequestId:
    """Takes ``X-Request-ID`` (or makes one), exposes it to logs, echoes it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", [])).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _VALID_REQUEST_ID.fullmatch(given) else secrets.token_hex(8)
        token = request_id.set(rid)
        client = scope.get("client")
        client_token = client_address.set(str(client[0]) if client else None)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
            client_address.reset(client_token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            data.update(fields)
        rid = request_id.get()
        if rid:
            data["request_id"] = rid
            data.setdefault("client", client_address.get())
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{time.strftime('%H:%M:%S', time.localtime(record.created))} "
        line += f"{record.levelname:<7} {record.name}: {redact(record.getMessage())}"
        rid = request_id.get()
        if rid:
            line += f" [{rid}]"
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _use_json(settings: Settings) -> bool:
    if settings.log_format == "auto":
        return not sys.stderr.isatty()
    return settings.log_format == "json"


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if _use_json(settings) else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())


def uvicorn_log_config(settings: Settings) -> dict[str, Any]:
    """uvicorn's loggers (access log included) in the same format as ours."""
    formatter = (
        "gateway.logs.JsonFormatter" if _use_json(settings) else "gateway.logs.TextFormatter"
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": formatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            },
        },  # fmt: skip
        "loggers": {
            "uvicorn": {
                "handlers": ["default"],
                "level": settings.log_level.upper(),
                "propagate": False,
            },
            "uvicorn.access": {"handlers": ["default"], "level": "INFO", "propagate": False},
        },  # fmt: skip
    }
