"""The ``tuspyserver`` peer: its FastAPI tus router with its own S3 storage.

``S3Storage`` takes a boto3 client, so it talks to the run's SeaweedFS through
the same client configuration the gateway uses. Its part size is left at the
library's default (5 MiB). Run as ``python -m bench.tuspy_peer --port N
--bucket B`` with the AWS_* variables of the SeaweedFS server in the
environment.
"""

from __future__ import annotations

import argparse
import os

import uvicorn
from fastapi import FastAPI
from tuspyserver import create_tus_router
from tuspyserver.storage.s3 import S3Storage

from gateway.store.s3 import build_client


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bucket", required=True)
    args = parser.parse_args()
    client = build_client(16, endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"])
    app = FastAPI()
    app.include_router(
        create_tus_router(
            prefix="files",
            storage=S3Storage(bucket=args.bucket, client=client, prefix="tus/"),
        )
    )
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
