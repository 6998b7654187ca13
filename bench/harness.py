"""The shared pieces of one run: the SeaweedFS server, test files, gateways, clients.

A scenario asks the :class:`Harness` for a fresh bucket and fresh server
processes; each is stopped when the scenario ends (or the run unwinds), and
each bucket is emptied and deleted so a long run does not fill the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.data import Files, TestFile
from bench.procs import Cleanup, Server
from tests.support.gateway import GatewayProcess, gateway_env, start_gateway
from tests.support.seaweed import SeaweedServer

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Options:
    scenarios: list[str]
    size: int
    big_size: int | None
    concurrency: list[int]
    concurrent_size: int
    small_count: int
    small_size: int
    leak_count: int
    leak_size: int
    repeat: int  # put pairs per size; the median pair is reported
    tus_chunks: list[int | None]  # None: one PATCH for the whole file (chunkSize Infinity)
    buffer_memory: int
    results: Path
    quick: bool
    gateway_env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PutResult:
    ok: bool
    status: int
    seconds: float
    body: dict[str, Any] | None
    error: str = ""


class Harness:
    def __init__(
        self, options: Options, workdir: Path, seaweed: SeaweedServer, cleanup: Cleanup
    ) -> None:
        self.options = options
        self.workdir = workdir
        self.seaweed = seaweed
        self.cleanup = cleanup
        self.files = Files(workdir / "files")

    def log(self, message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    # -- storage ---------------------------------------------------------------
    @contextlib.contextmanager
    def bucket(self) -> Iterator[str]:
        name = self.seaweed.make_bucket(f"bench-{uuid.uuid4().hex[:12]}")
        try:
            yield name
        finally:
            self.drop_bucket(name)

    def warm(self, bucket: str) -> None:
        """Write and delete one small object, so the bucket's volumes exist before timing."""
        client = self.seaweed.client()
        try:
            client.put_object(Bucket=bucket, Key="warm-up", Body=b"x" * (1 << 20))
            client.delete_object(Bucket=bucket, Key="warm-up")
        finally:
            client.close()

    def settle(self) -> None:
        """Write out dirty pages and let background work finish before a timed run."""
        os.sync()
        time.sleep(1.0)

    def drop_bucket(self, name: str) -> None:
        client = self.seaweed.client()
        try:
            uploads = client.list_multipart_uploads(Bucket=name).get("Uploads", [])
            for upload in uploads:
                with contextlib.suppress(Exception):
                    client.abort_multipart_upload(
                        Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
            paginator = client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=name):
                keys: list[Any] = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
            client.delete_bucket(Bucket=name)
        except Exception as exc:  # cleanup only: say so and go on
            self.log(f"could not remove bucket {name}: {exc!r}")
        finally:
            client.close()

    # -- servers -----------------------------------------------------------------
    @contextlib.contextmanager
    def gateway(
        self, name: str, *, bucket: str | None = None, **extra: str
    ) -> Iterator[GatewayProcess]:
        """A fresh gateway process: on the bucket when one is given, else the file store."""
        home = self.workdir / f"gw-{name}-{uuid.uuid4().hex[:6]}"
        env_extra: dict[str, str] = {
            "GATEWAY_BUFFER_MEMORY": str(self.options.buffer_memory),
            "GATEWAY_LOG_LEVEL": "warning",
        }
        if bucket is not None:
            env_extra.update(GATEWAY_STORAGE="s3", GATEWAY_S3_BUCKET=bucket, **self.seaweed.env())
        env_extra.update(self.options.gateway_env)
        env_extra.update(extra)
        process = start_gateway(home, gateway_env(home, **env_extra))
        self.cleanup.push(process.kill)
        try:
            yield process
        finally:
            process.kill()
            shutil.rmtree(home / "data", ignore_errors=True)

    @contextlib.contextmanager
    def server(
        self, name: str, argv: list[str], *, url: str, env: dict[str, str] | None = None
    ) -> Iterator[Server]:
        log = self.workdir / f"{name}.log"
        server = Server(name, argv, env=env or self.child_env(), cwd=REPO, log=log)
        self.cleanup.push(server.stop)
        try:
            server.wait_http(url)
            yield server
        finally:
            server.stop()

    def child_env(self, **extra: str) -> dict[str, str]:
        import os

        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir),
            "PYTHONPATH": str(REPO),
            **self.seaweed.env(),
        }
        env.update(extra)
        return env

    # -- clients -------------------------------------------------------------------
    async def curl_put(self, file: Path, url: str) -> PutResult:
        """``curl -T FILE URL`` as a partner runs it; the receipt parsed."""
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            "curl",
            "-sS",
            "--noproxy",
            "*",
            "-T",
            str(file),
            url,
            "-w",
            "\n%{http_code}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await process.communicate()
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        seconds = time.perf_counter() - started
        text, _, code = out.decode(errors="replace").rpartition("\n")
        status = int(code) if code.strip().isdigit() else 0
        body: dict[str, Any] | None = None
        with contextlib.suppress(ValueError):
            parsed = json.loads(text)
            body = parsed if isinstance(parsed, dict) else None
        ok = process.returncode == 0 and status in (200, 201)
        error = (
            ""
            if ok
            else f"curl rc={process.returncode} http={status} {err.decode()[:200]} {text[:200]}"
        )
        return PutResult(ok=ok, status=status, seconds=seconds, body=body, error=error)

    def check_receipt(self, result: PutResult, file: TestFile) -> str:
        """Why the receipt does not match the file sent, or "" when it does."""
        if not result.ok:
            return result.error
        body = result.body or {}
        if body.get("size") not in (None, file.size):
            return f"receipt size {body.get('size')} != {file.size}"
        if body.get("sha256") not in (None, file.sha256):
            return "receipt sha256 differs from the file's"
        return ""

    def node(self) -> str:
        found = shutil.which("node")
        if not found:
            raise RuntimeError("node is not installed (needed for the tus scenario)")
        return found
