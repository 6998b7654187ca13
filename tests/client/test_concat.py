"""One file as partial uploads joined by a final one, against a real gateway: sent at
once, resumed from what the state file remembers, and started over when they are gone."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from gateway.client.concat import Joiner
from gateway.client.progress import Meter
from gateway.client.send import Job, Sender
from gateway.client.state import StateFile
from gateway.client.streams import Part, parts_entry, split
from gateway.client.tus import TUS, Tus

MiB = 1024 * 1024


def a_job(tmp_path: Path, size: int) -> tuple[Job, str]:
    data = os.urandom(size)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    return Job(path, "key", size, Meter(None, path.name, size)), hashlib.sha256(data).hexdigest()


def test_partials_sent_at_once_and_joined(tus: Tus, states: StateFile, tmp_path: Path) -> None:
    job, digest = a_job(tmp_path, 12 * MiB + 3)
    spans = split(job.size, 3, MiB)
    assert len(spans) == 2
    file_id, got = Joiner(Sender(tus, 0), states).start(job, spans)
    assert got == digest
    tus.check_receipt(file_id, job.size, digest)
    entry = states.get("key")
    assert entry is not None and len(entry["parts"]) == 2  # upload() forgets it after the receipt


def test_resume_continues_remembered_partials(tus: Tus, states: StateFile, tmp_path: Path) -> None:
    job, digest = a_job(tmp_path, 12 * MiB)
    spans = split(job.size, 2, MiB)
    parts = [Part(tus.create_partial(span), span) for span in spans]
    first = job.path.read_bytes()[: 2 * MiB]
    headers = {**TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
    assert tus.client.patch(parts[0].url, content=first, headers=headers).status_code == 204
    joiner = Joiner(Sender(tus, MiB), states)
    resumed = joiner.resume(job, parts, parts_entry(parts))
    assert resumed is not None
    file_id, got = resumed
    assert got == digest
    tus.check_receipt(file_id, job.size, digest)


def test_resume_forgets_partials_the_server_no_longer_has(
    tus: Tus, states: StateFile, tmp_path: Path
) -> None:
    job, _ = a_job(tmp_path, 12 * MiB)
    spans = split(job.size, 2, MiB)
    parts = [Part(tus.create_partial(span), span) for span in spans]
    states.remember(job.key, job.path, job.size, parts_entry(parts))
    tus.delete_all([parts[1].url])
    assert Joiner(Sender(tus, 0), states).resume(job, parts, parts_entry(parts)) is None
    assert states.get(job.key) is None
    assert tus.head(parts[0].url).status_code in (404, 410)  # the rest removed too
