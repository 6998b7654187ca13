"""Settings, built and validated once from the environment at start-up.

Nothing else in the package reads ``os.environ``: everything takes a
:class:`Settings`. A bad value raises :class:`ConfigError` with one line that
names the variable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from gateway.errors import ConfigError
from gateway.parsers import boolean, choice, comma_list, desk_id, http_url, positive, table, wait
from gateway.parsers import is_loopback_url as is_loopback_url  # also the place others import it
from gateway.scan import CLAMD_MAX_SCAN
from gateway.signing import load_or_create_secret
from gateway.units import parse_duration, parse_size

T = TypeVar("T")

MiB = 1024 * 1024
S3_MIN_PART = 5 * MiB
ZENDESK_ATTACHMENT_LIMIT = 50_000_000
# Jira sites set their own attachment size; 10 MiB is the cautious default and
# 2 GB the most one REST request to Jira Cloud carries.
JIRA_ATTACHMENT_DEFAULT = 10 * 1024 * 1024
JIRA_ATTACHMENT_LIMIT = 2_000_000_000
# Freshdesk takes at most 20 MB of attachments on one note (all files together).
FRESHDESK_ATTACHMENT_LIMIT = 20_000_000
# ServiceNow's com.glide.attachment.max_size default: 1024 MB per attachment.
SERVICENOW_ATTACHMENT_LIMIT = 1024 * 1024 * 1024
TICKET_SYSTEMS = ("local", "zendesk", "jira", "freshdesk", "servicenow")
# Past its ticket system's limit, GATEWAY_ATTACHMENT_MAX is lowered to it (start-up says so).
ATTACHMENT_LIMITS = {"jira": JIRA_ATTACHMENT_LIMIT, "freshdesk": FRESHDESK_ATTACHMENT_LIMIT,
                     "servicenow": SERVICENOW_ATTACHMENT_LIMIT}  # fmt: skip


@dataclass(frozen=True)
class ZendeskSettings:
    url: str
    oauth_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    email: str | None = None
    api_token: str | None = None
    webhook_secret: str | None = None

    def __repr__(self) -> str:  # never print secrets
        return f"ZendeskSettings(url={self.url!r}, auth={self.auth_kind!r})"

    @property
    def auth_kind(self) -> str:
        if self.oauth_token:
            return "oauth"
        if self.client_id:
            return "client_credentials"
        if self.email:
            return "api_token"
        return "none"


@dataclass(frozen=True)
class JiraSettings:
    url: str
    service_desk_id: str
    email: str
    api_token: str = field(repr=False)

    def __repr__(self) -> str:  # never print secrets
        return f"JiraSettings(url={self.url!r}, service_desk_id={self.service_desk_id!r})"


@dataclass(frozen=True)
class FreshdeskSettings:
    url: str
    api_key: str = field(repr=False)  # never printed


@dataclass(frozen=True)
class ServiceNowSettings:
    url: str
    table: str = "incident"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    oauth_token: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:  # never print secrets
        kind = self.auth_kind
        return f"ServiceNowSettings(url={self.url!r}, table={self.table!r}, auth={kind!r})"

    @property
    def auth_kind(self) -> str:
        if self.oauth_token:
            return "oauth"
        if self.user and self.password:
            return "basic"
        return "none"


@dataclass(frozen=True)
class OidcSettings:
    """OpenID Connect sign-in of engineers before downloads (``GATEWAY_DOWNLOAD_AUTH=oidc``)."""

    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    allowed_domains: tuple[str, ...] = ()
    allowed_groups: tuple[str, ...] = ()
    groups_claim: str = "groups"
    scopes: str = "openid email profile"
    session_idle: int = 3600
    session_max: int = 12 * 3600


@dataclass(frozen=True)
class Settings:
    public_url: str = "http://127.0.0.1:8000"
    public_url_explicit: bool = False  # False: `serve` derives it from --host/--port
    secret: bytes = field(default=b"", repr=False)
    data_dir: Path = Path("./data")
    storage: str = "file"
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_sse: str | None = None
    s3_sse_kms_key_id: str | None = None
    s3_checksum: str = "CRC32C"
    tickets: str = "local"
    zendesk: ZendeskSettings | None = None
    zendesk_webhook_secret: str | None = field(default=None, repr=False)
    jira: JiraSettings | None = None
    freshdesk: FreshdeskSettings | None = None
    servicenow: ServiceNowSettings | None = None
    attachment_max: int = 20 * MiB
    # GATEWAY_ATTACHMENT_MAX as given, when the ticket system takes less (start-up says so).
    attachment_max_requested: int | None = None
    max_upload: int = 5 * 1024**4
    link_ttl: int = 14 * 86400
    download_ttl: int = 30 * 86400
    retention: int | None = None
    clamd: str | None = None
    clamd_max_scan: int = CLAMD_MAX_SCAN
    scan_oversize: str = "deliver"
    buffer_memory: int = 256 * MiB
    s3_max_parts: int = 10_000  # the most parts the store takes in one multipart upload
    staff_token: str | None = field(default=None, repr=False)
    public_comments: bool = False
    idle_timeout: float = 60.0
    min_body_rate: int = 1024  # bytes per second a request body must average; 0: no minimum
    min_body_rate_period: float = 10.0  # ... over this many seconds of waiting for the client
    link_concurrency: int = 8
    busy_wait: float = 30.0  # how long a request waits for a link slot or an upload's lease
    log_format: str = "auto"
    log_level: str = "info"
    embedded: bool = True
    malloc_arena_max_set: bool = False  # MALLOC_ARENA_MAX given: leave glibc's arenas alone
    download_redirect: bool = False  # answer download links with presigned storage URLs
    download_auth: str = "none"  # none | oidc (a download link also needs a signed-in engineer)
    oidc: OidcSettings | None = None

    @property
    def secret_required(self) -> bool:
        return not self.embedded

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _parse(env: Mapping[str, str], name: str, fn: Callable[[str], T], default: T) -> T:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        return fn(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _required(env: Mapping[str, str], names: Iterable[str] | Mapping[str, str], when: str) -> None:
    """Each of ``names`` must be set; a Mapping gives a hint for each (what to set it to)."""
    for name in names:
        if not _get(env, name):
            hint = f" ({names[name]})" if isinstance(names, Mapping) else ""
            raise ConfigError(f"{name}: required when {when}{hint}")


def _needs(env: Mapping[str, str], name: str, other: str) -> None:
    """``name`` set means ``other`` must be set too."""
    if _get(env, name) and not _get(env, other):
        raise ConfigError(f"{other}: required with {name}")


def _jira_settings(env: Mapping[str, str]) -> JiraSettings:
    required = {
        "GATEWAY_JIRA_URL": "e.g. https://acme.atlassian.net",
        "GATEWAY_JIRA_SERVICE_DESK_ID": "the service desk (project) id, e.g. 4",
        "GATEWAY_JIRA_EMAIL": "the Atlassian account the gateway posts as",
        "GATEWAY_JIRA_API_TOKEN": "an API token of that account",
    }
    _required(env, required, "GATEWAY_TICKETS=jira")
    return JiraSettings(
        url=_parse(env, "GATEWAY_JIRA_URL", http_url, ""),
        service_desk_id=_parse(env, "GATEWAY_JIRA_SERVICE_DESK_ID", desk_id, ""),
        email=_get(env, "GATEWAY_JIRA_EMAIL") or "",
        api_token=_get(env, "GATEWAY_JIRA_API_TOKEN") or "",
    )


def _freshdesk(env: Mapping[str, str]) -> FreshdeskSettings:
    names = ("GATEWAY_FRESHDESK_URL", "GATEWAY_FRESHDESK_API_KEY")
    _required(env, names, "GATEWAY_TICKETS=freshdesk")
    url = _parse(env, names[0], http_url, "")
    return FreshdeskSettings(url=url, api_key=_get(env, names[1]) or "")


def _servicenow(env: Mapping[str, str]) -> ServiceNowSettings:
    _required(env, ["GATEWAY_SERVICENOW_URL"], "GATEWAY_TICKETS=servicenow")
    settings = ServiceNowSettings(
        url=_parse(env, "GATEWAY_SERVICENOW_URL", http_url, ""),
        table=_parse(env, "GATEWAY_SERVICENOW_TABLE", table, "incident"),
        user=_get(env, "GATEWAY_SERVICENOW_USER"),
        password=_get(env, "GATEWAY_SERVICENOW_PASSWORD"),
        oauth_token=_get(env, "GATEWAY_SERVICENOW_OAUTH_TOKEN"),
    )
    _needs(env, "GATEWAY_SERVICENOW_USER", "GATEWAY_SERVICENOW_PASSWORD")
    _needs(env, "GATEWAY_SERVICENOW_PASSWORD", "GATEWAY_SERVICENOW_USER")
    if settings.auth_kind == "none":
        raise ConfigError(
            "GATEWAY_SERVICENOW_OAUTH_TOKEN: set it (or GATEWAY_SERVICENOW_USER and "
            "GATEWAY_SERVICENOW_PASSWORD) when GATEWAY_TICKETS=servicenow"
        )
    return settings


def _oidc(env: Mapping[str, str]) -> OidcSettings:
    """The OpenID Connect settings that GATEWAY_DOWNLOAD_AUTH=oidc requires."""
    names = ("GATEWAY_OIDC_ISSUER", "GATEWAY_OIDC_CLIENT_ID", "GATEWAY_OIDC_CLIENT_SECRET")
    _required(env, names, "GATEWAY_DOWNLOAD_AUTH=oidc")
    domains = tuple(
        d.lower().lstrip("@") for d in comma_list(_get(env, "GATEWAY_OIDC_ALLOWED_DOMAINS") or "")
    )
    groups = comma_list(_get(env, "GATEWAY_OIDC_ALLOWED_GROUPS") or "")
    if not domains and not groups:
        raise ConfigError(
            "GATEWAY_OIDC_ALLOWED_DOMAINS: set it or GATEWAY_OIDC_ALLOWED_GROUPS when "
            "GATEWAY_DOWNLOAD_AUTH=oidc (who of the identity provider's users may download)"
        )
    idle = _parse(env, "GATEWAY_OIDC_SESSION_IDLE", parse_duration, 3600)
    longest = _parse(env, "GATEWAY_OIDC_SESSION_MAX", parse_duration, 12 * 3600)
    if idle <= 0 or longest < idle:
        raise ConfigError(
            "GATEWAY_OIDC_SESSION_MAX: must be at least GATEWAY_OIDC_SESSION_IDLE (both positive)"
        )
    return OidcSettings(
        issuer=_parse(env, "GATEWAY_OIDC_ISSUER", http_url, ""),
        client_id=_get(env, "GATEWAY_OIDC_CLIENT_ID") or "",
        client_secret=_get(env, "GATEWAY_OIDC_CLIENT_SECRET") or "",
        allowed_domains=domains, allowed_groups=groups, session_idle=idle, session_max=longest,
        groups_claim=_get(env, "GATEWAY_OIDC_GROUPS_CLAIM") or "groups",
        scopes=_get(env, "GATEWAY_OIDC_SCOPES") or "openid email profile",
    )  # fmt: skip


Fields = dict[str, Any]  # some of Settings' fields, by name, from one area's builder


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from ``env`` (default: the process environment), area by area."""
    env = os.environ if env is None else env
    storage = _parse(env, "GATEWAY_STORAGE", choice("file", "s3"), "file")
    tickets = _parse(env, "GATEWAY_TICKETS", choice(*TICKET_SYSTEMS), "local")
    data_dir = Path(_get(env, "GATEWAY_DATA_DIR") or "./data")
    embedded = storage == "file" and tickets == "local"
    secret_text = _secret_text(env, embedded)
    settings = Settings(
        data_dir=data_dir, storage=storage, tickets=tickets, embedded=embedded,
        **_storage(env, storage), **_ticket_system(env, tickets), **_limits(env, tickets),
        **_scanning(env), **_downloads(env, storage), **_serving(env),
    )  # fmt: skip
    secret = secret_text.encode() if secret_text else load_or_create_secret(data_dir)
    return replace(settings, secret=secret)


def _secret_text(env: Mapping[str, str], embedded: bool) -> str | None:
    secret_text = _get(env, "GATEWAY_SECRET")
    if secret_text is not None and len(secret_text) < 32:
        raise ConfigError("GATEWAY_SECRET: must be at least 32 characters")
    if secret_text is None and not embedded:
        raise ConfigError(
            "GATEWAY_SECRET: required when GATEWAY_STORAGE or GATEWAY_TICKETS is not the "
            "embedded default (set a random string of at least 32 characters)"
        )
    return secret_text


def _storage(env: Mapping[str, str], storage: str) -> Fields:
    _required(env, ["GATEWAY_S3_BUCKET"] if storage == "s3" else [], "GATEWAY_STORAGE=s3")
    bucket = _get(env, "GATEWAY_S3_BUCKET")
    prefix = _get(env, "GATEWAY_S3_PREFIX") or ""
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    sse = _parse(env, "GATEWAY_S3_SSE", choice("AES256", "aws:kms"), None)
    kms_key = _get(env, "GATEWAY_S3_SSE_KMS_KEY_ID")
    if kms_key and sse != "aws:kms":
        raise ConfigError("GATEWAY_S3_SSE_KMS_KEY_ID: needs GATEWAY_S3_SSE=aws:kms")
    checksum = _parse(env, "GATEWAY_S3_CHECKSUM", choice("CRC32C", "CRC32"), "CRC32C")
    return {"s3_bucket": bucket, "s3_prefix": prefix, "s3_sse": sse,
            "s3_sse_kms_key_id": kms_key, "s3_checksum": checksum}  # fmt: skip


def _ticket_system(env: Mapping[str, str], tickets: str) -> Fields:
    webhook_secret = _get(env, "GATEWAY_ZENDESK_WEBHOOK_SECRET")
    return {
        "zendesk": _zendesk(env, webhook_secret) if tickets == "zendesk" else None,
        "zendesk_webhook_secret": webhook_secret,
        "jira": _jira_settings(env) if tickets == "jira" else None,
        "freshdesk": _freshdesk(env) if tickets == "freshdesk" else None,
        "servicenow": _servicenow(env) if tickets == "servicenow" else None,
    }


def _zendesk(env: Mapping[str, str], webhook_secret: str | None) -> ZendeskSettings:
    _required(env, ["GATEWAY_ZENDESK_URL"], "GATEWAY_TICKETS=zendesk")
    _needs(env, "GATEWAY_ZENDESK_CLIENT_ID", "GATEWAY_ZENDESK_CLIENT_SECRET")
    _needs(env, "GATEWAY_ZENDESK_EMAIL", "GATEWAY_ZENDESK_TOKEN")
    zendesk = ZendeskSettings(
        url=_parse(env, "GATEWAY_ZENDESK_URL", http_url, ""),
        oauth_token=_get(env, "GATEWAY_ZENDESK_OAUTH_TOKEN"),
        client_id=_get(env, "GATEWAY_ZENDESK_CLIENT_ID"),
        client_secret=_get(env, "GATEWAY_ZENDESK_CLIENT_SECRET"),
        email=_get(env, "GATEWAY_ZENDESK_EMAIL"),
        api_token=_get(env, "GATEWAY_ZENDESK_TOKEN"),
        webhook_secret=webhook_secret,
    )
    if zendesk.auth_kind == "none":
        raise ConfigError(
            "GATEWAY_ZENDESK_OAUTH_TOKEN: set it (or GATEWAY_ZENDESK_CLIENT_ID and "
            "GATEWAY_ZENDESK_CLIENT_SECRET, or GATEWAY_ZENDESK_EMAIL and "
            "GATEWAY_ZENDESK_TOKEN) when GATEWAY_TICKETS=zendesk"
        )
    return zendesk


def _limits(env: Mapping[str, str], tickets: str) -> Fields:
    default_attachment_max = JIRA_ATTACHMENT_DEFAULT if tickets == "jira" else 20 * MiB
    attachment_max = _parse(env, "GATEWAY_ATTACHMENT_MAX", parse_size, default_attachment_max)
    max_upload = _parse(env, "GATEWAY_MAX_UPLOAD", parse_size, 5 * 1024**4)
    if max_upload <= 0:
        raise ConfigError("GATEWAY_MAX_UPLOAD: must be positive")
    buffer_memory = _parse(env, "GATEWAY_BUFFER_MEMORY", parse_size, 256 * MiB)
    if buffer_memory < 2 * S3_MIN_PART:
        raise ConfigError("GATEWAY_BUFFER_MEMORY: must be at least 10MiB (two 5 MiB parts)")
    s3_max_parts = _parse(env, "GATEWAY_S3_MAX_PARTS", positive, 10_000)
    if not 2 <= s3_max_parts <= 10_000:
        raise ConfigError(
            f"GATEWAY_S3_MAX_PARTS: must be between 2 and 10000 (S3's limit), got {s3_max_parts}"
        )
    if tickets == "zendesk" and attachment_max > ZENDESK_ATTACHMENT_LIMIT:
        raise ConfigError(
            "GATEWAY_ATTACHMENT_MAX: Zendesk takes attachments of at most 50 MB; "
            "larger files are delivered as download links"
        )
    # Each ticket system takes attachments up to its own limit; past it, files go as links.
    requested: int | None = None
    limit = ATTACHMENT_LIMITS.get(tickets)
    if limit is not None and attachment_max > limit:
        requested, attachment_max = attachment_max, limit
    return {
        "attachment_max": attachment_max, "attachment_max_requested": requested,
        "max_upload": max_upload, "buffer_memory": buffer_memory, "s3_max_parts": s3_max_parts,
        "link_ttl": _parse(env, "GATEWAY_LINK_TTL", parse_duration, 14 * 86400),
        "download_ttl": _parse(env, "GATEWAY_DOWNLOAD_TTL", parse_duration, 30 * 86400),
        "retention": _parse(env, "GATEWAY_RETENTION", parse_duration, None),
    }  # fmt: skip


def _scanning(env: Mapping[str, str]) -> Fields:
    clamd = _get(env, "GATEWAY_CLAMD")
    if clamd and not (clamd.startswith("tcp://") or clamd.startswith("/")):
        raise ConfigError("GATEWAY_CLAMD: expected tcp://HOST:PORT or an absolute socket path")
    clamd_max_scan = _parse(env, "GATEWAY_CLAMD_MAX_SCAN", parse_size, CLAMD_MAX_SCAN)
    if not 0 < clamd_max_scan <= CLAMD_MAX_SCAN:
        raise ConfigError(
            f"GATEWAY_CLAMD_MAX_SCAN: must be between 1 byte and {CLAMD_MAX_SCAN} bytes "
            "(libclamav scans at most 2 GiB - 1 of a file)"
        )
    oversize = _parse(env, "GATEWAY_SCAN_OVERSIZE", choice("deliver", "quarantine"), "deliver")
    return {"clamd": clamd, "clamd_max_scan": clamd_max_scan, "scan_oversize": oversize}


def _downloads(env: Mapping[str, str], storage: str) -> Fields:
    download_redirect = _parse(env, "GATEWAY_DOWNLOAD_REDIRECT", boolean, False)
    if download_redirect and storage != "s3":
        raise ConfigError(
            "GATEWAY_DOWNLOAD_REDIRECT: needs GATEWAY_STORAGE=s3 (the file store has no "
            "presigned URLs; leave it false to serve downloads through the gateway)"
        )
    download_auth = _parse(env, "GATEWAY_DOWNLOAD_AUTH", choice("none", "oidc"), "none")
    oidc = _oidc(env) if download_auth == "oidc" else None
    public_url = _parse(env, "GATEWAY_PUBLIC_URL", http_url, "http://127.0.0.1:8000")
    secure = public_url.startswith("https://") or is_loopback_url(public_url)
    if oidc is not None and not secure:
        raise ConfigError(
            "GATEWAY_PUBLIC_URL: must be https with GATEWAY_DOWNLOAD_AUTH=oidc (the session "
            "cookie is Secure outside loopback)"
        )
    explicit = _get(env, "GATEWAY_PUBLIC_URL") is not None  # else `serve` derives it
    return {"public_url": public_url, "public_url_explicit": explicit, "oidc": oidc,
            "download_redirect": download_redirect, "download_auth": download_auth}  # fmt: skip


def _serving(env: Mapping[str, str]) -> Fields:
    """Staff access, comment visibility, request timing and slots, logging."""
    levels = choice("debug", "info", "warning", "error")
    period = float(_parse(env, "GATEWAY_MIN_BODY_RATE_PERIOD", parse_duration, 10))
    return {
        "staff_token": _get(env, "GATEWAY_STAFF_TOKEN"),
        "public_comments": _parse(env, "GATEWAY_PUBLIC_COMMENTS", boolean, False),
        "idle_timeout": float(_parse(env, "GATEWAY_IDLE_TIMEOUT", parse_duration, 60)),
        "min_body_rate": _parse(env, "GATEWAY_MIN_BODY_RATE", parse_size, 1024),
        "min_body_rate_period": period,
        "link_concurrency": _parse(env, "GATEWAY_LINK_CONCURRENCY", positive, 8),
        "busy_wait": float(_parse(env, "GATEWAY_BUSY_WAIT", wait, 30)),
        "log_format": _parse(env, "GATEWAY_LOG_FORMAT", choice("auto", "json", "text"), "auto"),
        "log_level": _parse(env, "GATEWAY_LOG_LEVEL", levels, "info"),
        "malloc_arena_max_set": "MALLOC_ARENA_MAX" in env,
    }
