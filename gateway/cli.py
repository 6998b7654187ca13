"""The ``gateway`` command: serve, link, upload, download, sweep, purge.

click gives us consistent ``--help``, option parsing and exit codes for free.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import sys
from typing import Any

import click

from gateway import __version__
from gateway.errors import ConfigError, GatewayError
from gateway.settings import Settings, load_settings
from gateway.units import format_duration, format_size, parse_duration, parse_size


def _settings() -> Settings:
    try:
        settings = load_settings()
    except ConfigError as exc:
        click.echo(f"gateway: configuration error: {exc}", err=True)
        sys.exit(2)
    # Commands that change things (link, sweep, purge) write audit lines like the server
    # does, to stderr in the configured format; stdout keeps only their own output.
    from gateway.logs import configure_logging

    configure_logging(settings)
    return settings


def _operator() -> str:
    """Who ran the command, for the audit line (a uid where no user name is known)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        import os

        return f"uid {os.getuid()}"


class _Size(click.ParamType):  # type: ignore[type-arg]
    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class _Streams(click.ParamType):  # type: ignore[type-arg]
    """A positive number of streams, or ``auto`` (None)."""

    name = "N|auto"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> int | None:
        if value is None or isinstance(value, int) and value >= 1:
            return value
        text = str(value).strip().lower()
        if text == "auto":
            return None
        if text.isdigit() and int(text) >= 1:
            return int(text)
        self.fail(f"expected a number of at least 1 or 'auto', got {value!r}", param, ctx)


class _Duration(click.ParamType):  # type: ignore[type-arg]
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gateway")
def main() -> None:
    """Large-file upload gateway for support tickets.

    Configuration comes from GATEWAY_* environment variables (see the README).
    """


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--demo",
    is_flag=True,
    help="Print a ready upload link for a demo ticket (1001) and the staff view of it.",
)
@click.option(
    "--grace",
    default=110.0,
    show_default=True,
    type=float,
    help="Seconds running uploads get to finish after SIGTERM.",
)
def serve(host: str, port: int, demo: bool, grace: float) -> None:
    """Run the service."""
    from gateway.server import run

    settings = _settings()
    if not settings.public_url_explicit:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        shown = f"[{shown}]" if ":" in shown else shown
        settings = settings.with_(public_url=f"http://{shown}:{port}")
    if demo:
        from gateway.links import Links

        minted = Links(settings).mint("1001")
        click.echo(f"Staff view of the demo ticket: {settings.public_url}/tickets/1001")
        click.echo(
            f"Upload link for demo ticket 1001 (valid {format_duration(settings.link_ttl)}):"
        )
        click.echo(minted.url)
    run(settings, host=host, port=port, grace=grace)


@main.command()
@click.option(
    "--ticket",
    required=True,
    help="Ticket id the uploads go to: a ticket number (4242), a Jira issue key (SUP-123) "
    "or a ServiceNow record number (INC0010001).",
)
@click.option("--expires", type=_Duration(), default=None, help="Lifetime, e.g. 30m, 12h, 14d.")
@click.option("--max-size", type=_Size(), default=None, help="Size cap, e.g. 500MB, 2GiB, 1TB.")
def link(ticket: str, expires: int | None, max_size: int | None) -> None:
    """Mint an upload link for a ticket (the URL is the last line printed)."""
    import time

    from gateway.links import Links

    settings = _settings()
    try:
        minted = Links(settings).mint(ticket, expires_in=expires, max_size=max_size)
    except GatewayError as exc:
        click.echo(f"gateway: {exc.message}", err=True)
        sys.exit(2)
    logging.getLogger("gateway.audit").info(
        "link_minted",
        extra={
            "event": "link_minted",
            "fields": {"ticket": ticket, "link_id": minted.link.link_id, "via": "cli",
                       "expires_at": minted.link.expires_at, "max_size": minted.link.max_size,
                       "by": _operator()},
        },
    )  # fmt: skip
    expires_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(minted.link.expires_at))
    click.echo(f"Ticket:   {ticket}")
    click.echo(f"Expires:  {expires_at}")
    click.echo(f"Max size: {format_size(minted.link.max_size)}")
    click.echo(minted.url)


@main.command()
@click.argument("url")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--parallel",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    help="Files uploaded at the same time.",
)
@click.option(
    "--streams",
    default="auto",
    show_default=True,
    type=_Streams(),
    help="Parts of one file uploaded at the same time (tus concatenation), each in ranges "
    "of at least 16 MiB, so smaller files get fewer; the server joins them at the end. "
    "'auto': 4 to a gateway whose round trip is 30 ms or more (where one connection is "
    "held back by latency), 1 to one close by (where joining costs more than it gives). "
    "A file too small for two ranges or over the link's cap, or every file when the "
    "server lacks concatenation, goes as one upload. Requests at once: up to "
    "--parallel x --streams.",
)
@click.option(
    "--chunk-size",
    type=_Size(),
    default=None,
    help="Bytes per request, each sent with its SHA-256 for the server to check (tus "
    "checksum); one chunk per stream is held in memory. By default each stream sends its "
    "bytes in one request read from disk as it goes: no wait between requests, little "
    "memory, and the whole file's SHA-256 is still checked against the receipt.",
)
@click.option(
    "--retries",
    default=10,
    show_default=True,
    type=click.IntRange(min=0),
    help="Retries of a request that failed without getting a byte through (backoff with "
    "jitter, honouring Retry-After).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def upload(
    url: str,
    files: tuple[str, ...],
    parallel: int,
    streams: int | None,
    chunk_size: int | None,
    retries: int,
    quiet: bool,
) -> None:
    """Upload FILES to an upload link; re-run the same command to resume.

    \b
    Prints one line per file on stdout when done:
      OK <sha256> <size> <filename>
      FAILED <reason> <filename>
    and exits 0 only if every file is OK. Unfinished uploads are remembered
    in $XDG_STATE_HOME/upload-gateway (default ~/.local/state/upload-gateway).
    """
    from gateway.client.upload import run_upload

    sys.exit(
        run_upload(
            url, list(files), parallel=parallel, streams=streams, chunk_size=chunk_size or 0,
            retries=retries, quiet=quiet,
        )
    )  # fmt: skip


@main.command()
@click.argument("urls", nargs=-1, metavar="URL...")
@click.option(
    "-o",
    "--output",
    "directory",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Directory the files go to.",
)
@click.option(
    "--connections",
    default=4,
    show_default=True,
    type=click.IntRange(min=1, max=64),
    help="Ranged requests at once for one file (pieces of 1 to 32 MiB).",
)
@click.option("--ticket", default=None, help="Fetch every stored file of this ticket instead.")
@click.option(
    "--gateway",
    "gateway_url",
    default=None,
    metavar="URL",
    help="The gateway's base URL (e.g. https://uploads.example.com): with --ticket, or so "
    "links on it carry GATEWAY_STAFF_TOKEN where downloads need sign-in.",
)
@click.option(
    "--token",
    envvar="GATEWAY_STAFF_TOKEN",
    default=None,
    show_envvar=True,
    help="Staff token for --ticket (better set through the environment variable).",
)
@click.option(
    "--retries",
    default=10,
    show_default=True,
    type=click.IntRange(min=0),
    help="Retries of a piece (backoff with jitter, honouring Retry-After).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def download(
    urls: tuple[str, ...],
    directory: str,
    connections: int,
    ticket: str | None,
    gateway_url: str | None,
    token: str | None,
    retries: int,
    quiet: bool,
) -> None:
    """Download files from signed download links; re-run the same command to resume.

    \b
    Each file is fetched in ranged pieces on --connections connections into
    NAME.part, with its progress in NAME.part.json beside it (a re-run, or
    a fresh link to the same file, continues from there), and gets its
    final NAME only after its SHA-256 matched the link's ETag. Prints one
    line per file on stdout when done:
      OK <sha256> <size> <path>
      FAILED <reason> <url>
    and exits 0 only if every file is OK.

    \b
    With --ticket ID --gateway URL (and GATEWAY_STAFF_TOKEN), fetches every
    stored file of the ticket, listed by GET /api/tickets/ID/files. With
    links and --gateway URL, the links on that gateway carry the staff
    token, which stands for a signed-in engineer where the gateway requires
    sign-in for downloads (GATEWAY_DOWNLOAD_AUTH=oidc).
    """
    from gateway.client.download import run_download

    if ticket is None and not urls:
        raise click.UsageError("give one or more download links, or --ticket ID --gateway URL")
    if ticket is not None and urls:
        raise click.UsageError("give either download links or --ticket, not both")
    if ticket is not None and not gateway_url:
        raise click.UsageError("--ticket needs --gateway URL")
    if ticket is not None and not token:
        raise click.UsageError("--ticket needs the staff token in GATEWAY_STAFF_TOKEN")
    sys.exit(
        run_download(
            list(urls), directory=directory, connections=connections, retries=retries,
            quiet=quiet, ticket=ticket, gateway=gateway_url, token=token,
        )
    )  # fmt: skip


@main.command()
def sweep() -> None:
    """Housekeeping: expired uploads, abandoned multipart uploads, retention, leftovers."""
    from gateway.services import build_services
    from gateway.sweep import sweep as run_sweep

    settings = _settings()

    async def go() -> list[str]:
        services = build_services(settings)
        try:
            report = await run_sweep(
                services.records,
                services.engine,
                retention=settings.retention,
                on_event=services.event,
            )
            return report.lines()
        finally:
            await services.close()

    for line in asyncio.run(go()):
        click.echo(line)


@main.command()
@click.option("--ticket", required=True, help="Ticket whose stored files are deleted.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge(ticket: str, yes: bool) -> None:
    """Delete every stored file of a ticket (on request)."""
    from gateway.services import build_services
    from gateway.sweep import purge_ticket

    settings = _settings()
    if not yes:
        click.confirm(f"Delete every stored file of ticket {ticket}?", abort=True)

    async def go() -> int:
        services = build_services(settings)
        try:
            deleted = await purge_ticket(services.records, ticket)
            for file in deleted:
                services.event(
                    "purged", {"file_id": file.file_id, "ticket": ticket, "size": file.size}
                )
            return len(deleted)
        finally:
            await services.close()

    click.echo(f"deleted {asyncio.run(go())} file(s) of ticket {ticket}")
