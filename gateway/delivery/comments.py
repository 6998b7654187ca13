"""What a ticket comment says about delivered files (pure functions).

Each file in a comment carries a marker, ``[upload-gateway file FILE_ID]``,
so that after a crash the outbox can ask the ticket which files it already
shows (exactly one comment per file).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.units import format_size
from gateway.uploads.records import FileRecord


def marker(file_id: str) -> str:
    return f"[upload-gateway file {file_id}]"


@dataclass(frozen=True)
class CommentLine:
    file: FileRecord
    download_url: str | None = None
    link_expires_at: float | None = None
    infected: str | None = None  # the scanner's signature name
    # Why the file is held back without malware found (too large to scan, under
    # GATEWAY_SCAN_OVERSIZE=quarantine); like ``infected``, no attachment, no link.
    held: str | None = None
    # A caveat shown with a delivered file (too large to scan, delivered anyway).
    caveat: str | None = None

    @property
    def withheld(self) -> bool:
        """Neither attached nor linked: quarantined for malware or for its size."""
        return bool(self.infected or self.held)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _size(n: int) -> str:
    return f"{format_size(n)} ({n:,} bytes)" if n >= 1024 else f"{n} bytes"


def render(lines: list[CommentLine]) -> str:
    """The comment body for a batch of files of one ticket."""
    count = len(lines)
    head = "1 file was uploaded" if count == 1 else f"{count} files were uploaded"
    out = [f"{head} through the upload link:", ""]
    for line in lines:
        f = line.file
        out.append(f"• {f.filename} — {_size(f.size)}")
        out.append(f"  SHA-256: {f.sha256}")
        if line.infected:
            out.append(
                f"  QUARANTINED: malware detected ({line.infected}). The file is not attached "
                "and has no download link."
            )
        elif line.held:
            out.append(
                f"  QUARANTINED: {line.held}. The file is not attached and has no download link."
            )
        elif line.download_url:
            expiry = f" (expires {_when(line.link_expires_at)})" if line.link_expires_at else ""
            out.append(f"  Download: {line.download_url}{expiry}")
        else:
            out.append("  Attached to this comment.")
        if line.caveat and not line.withheld:
            out.append(f"  Caution: {line.caveat}.")
        out.append(f"  {marker(f.file_id)}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"
