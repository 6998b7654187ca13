"""HTML of the partner's page (pure functions: data in, markup out).

Every value is escaped here, once. No inline script or style anywhere: the
page's CSP forbids both, and the script reads its settings from ``data-``
attributes on ``#app``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from html import escape
from typing import Any

from gateway.signing import UploadLink
from gateway.units import format_size

AssetUrl = Callable[[str], str]


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def remaining(seconds: float) -> str:
    """``in 13 days``, ``in 5 hours``, ``in 12 minutes``: how long a link still lives."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"in {n} {unit}{'s' if n != 1 else ''}"
    return "in less than a minute"


def _size(n: int) -> str:
    return format_size(n).replace(".0 ", " ")


def _document(title: str, body: str, asset_url: AssetUrl, *, script: bool = False) -> str:
    script_tag = ""
    if script:  # an ES module: deferred, and it imports its siblings by relative URL
        script_tag = f'\n<script type="module" src="{asset_url("upload.js")}"></script>'

    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<meta name="referrer" content="no-referrer">
<title>{escape(title)}</title>
<link rel="icon" type="image/svg+xml" href="{asset_url("icon.svg")}">
<link rel="stylesheet" href="{asset_url("upload.css")}">{script_tag}
</head>
<body>
{body}
</body>
</html>
"""


def _brand(heading: str, sub: str, asset_url: AssetUrl) -> str:
    return f"""<header class="brand">
  <img class="logo" src="{asset_url("icon.svg")}" alt="" width="40" height="40">
  <div>
    <h1>{escape(heading)}</h1>
    <p class="sub">{sub}</p>
  </div>
</header>"""


def upload_page(
    *,
    token: str,
    link: UploadLink,
    now: float,
    chunk: int,
    asset_url: AssetUrl,
    link_concurrency: int = 8,
) -> str:
    """The upload page: ticket, size cap, expiry, a no-JS form the script upgrades.

    ``link_concurrency`` is how many uploads the gateway takes at once through one
    link; the script never runs more PATCHes at once than that.
    """
    ticket = escape(link.ticket)
    base = f"/u/{escape(token)}"
    body = f"""<main class="card" id="app"
  data-ticket="{ticket}"
  data-tus-endpoint="{base}/tus/"
  data-files-url="{base}/files"
  data-max-size="{link.max_size}"
  data-expires-at="{link.expires_at}"
  data-chunk-size="{chunk}"
  data-parallel="3"
  data-link-concurrency="{link_concurrency}">
{
        _brand(
            "Send files to support",
            f"Files you send here are added to ticket <strong>#{ticket}</strong>.",
            asset_url,
        )
    }
<dl class="facts">
  <div><dt>Ticket</dt><dd>#{ticket}</dd></div>
  <div><dt>Largest file</dt><dd title="{link.max_size:,} bytes">{_size(link.max_size)}</dd></div>
  <div><dt>Link expires</dt><dd><time datetime="{_iso(link.expires_at)}" data-expiry>{
        _when(link.expires_at)
    }</time> <span class="muted">({remaining(link.expires_at - now)})</span>
  </dd></div>
</dl>
<form class="picker" id="picker" method="post" enctype="multipart/form-data" action="{base}">
  <div class="drop" id="drop">
    <img class="drop-icon" src="{asset_url("icon.svg")}" alt="" width="48" height="48">
    <p class="drop-title" id="drop-title">Choose the files to send</p>
    <p class="drop-hint muted" id="drop-hint">Several files at once are fine.</p>
    <input id="files" class="file-input" name="file" type="file" multiple required
      aria-describedby="drop-hint">
    <label class="button primary" id="files-label" for="files">Choose files</label>
    <input id="folder" class="file-input" type="file" multiple webkitdirectory hidden
      tabindex="-1">
    <label class="button secondary" id="folder-label" for="folder" hidden>Choose a folder</label>
  </div>
  <div class="nojs-actions" id="nojs-actions">
    <button class="button primary" type="submit">Upload</button>
    <p class="muted">Keep this page open until the list of received files appears.</p>
  </div>
</form>
<section class="uploads" id="uploads" aria-labelledby="uploads-title" hidden>
  <h2 id="uploads-title">Files</h2>
  <ul class="rows" id="rows"></ul>
</section>
<div class="sr-only" id="announce" aria-live="polite" aria-atomic="true"></div>
<footer class="foot muted">
  <p>Uploads resume by themselves after a dropped connection. If you close this page,
  open the link again and choose the same file to continue where it stopped.</p>
  <p>Each file is checked with SHA-256; the fingerprint shown when a file is done
  matches the one on the ticket.</p>
</footer>
</main>"""
    return _document(f"Send files to ticket #{link.ticket}", body, asset_url, script=True)


def error_page(*, expired: bool, asset_url: AssetUrl) -> str:
    """A friendly page for an expired or invalid link (naming no ticket)."""
    if expired:
        heading = "This upload link has expired"
        text = (
            "Upload links only work for a limited time. Reply to your support "
            "conversation and ask for a new link; files you already sent are safe."
        )
    else:
        heading = "This upload link is not valid"
        text = "Check that the whole link was copied, or ask your support contact for a new one."
    body = f"""<main class="card narrow" role="main">
{_brand(heading, escape(text), asset_url)}
</main>"""
    return _document(heading, body, asset_url)


def problem_page(*, message: str, asset_url: AssetUrl) -> str:
    """A friendly page for a failed no-JavaScript form post."""
    heading = "The upload did not go through"
    text = f"{message} Go back and try again; files already received are safe."
    body = f"""<main class="card narrow" role="main">
{_brand(heading, escape(text), asset_url)}
</main>"""
    return _document(heading, body, asset_url)


def _status_text(receipt: dict[str, Any]) -> str:
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


def _tone(receipt: dict[str, Any]) -> str:
    return {"delivered": "ok", "failed": "bad", "quarantined": "bad"}.get(
        str(receipt.get("status")), "wait"
    )


def result_page(
    *, token: str, link: UploadLink, receipts: list[dict[str, Any]], asset_url: AssetUrl
) -> str:
    """The page after a no-JavaScript form post: one row per received file."""
    rows = []
    for r in receipts:
        file_id = escape(str(r.get("file_id", "")))
        name = escape(str(r.get("filename", "")))
        digest = escape(str(r.get("sha256", "")))
        rows.append(f"""<li class="row done" data-file-id="{file_id}">
  <div class="row-head"><span class="name">{name}</span>
  <span class="size muted">{_size(int(r.get("size", 0)))}</span></div>
  <p class="state {_tone(r)}">{escape(_status_text(r))}</p>
  <p class="hash"><span class="muted">SHA-256</span> <code>{digest}</code></p>
</li>""")
    count = len(receipts)
    heading = "File received" if count == 1 else f"{count} files received"
    body = f"""<main class="card" id="result">
{_brand(heading, f"Added to ticket <strong>#{escape(link.ticket)}</strong>.", asset_url)}
<section class="uploads" aria-label="Received files">
<ul class="rows">
{"".join(rows)}
</ul>
</section>
<p><a class="button secondary" href="/u/{escape(token)}">Send more files</a></p>
</main>"""
    return _document(heading, body, asset_url)
