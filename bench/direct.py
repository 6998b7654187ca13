"""The baselines: boto3 straight to or from the bucket, in its own process.

``python -m bench.direct upload BUCKET KEY FILE`` (``upload_file``) and
``python -m bench.direct download BUCKET KEY DEST`` (``download_file``) print
``{"seconds": ...}``. The endpoint and keys come from boto3's environment, as
for the gateway.

The client is configured as the gateway's own (payload signing off, same
pool), and the transfer is boto3's default (8 MiB parts, 10 threads, CRC32 on
uploads). awscrt is hidden from this process: with it installed botocore
computes CRC32 through awscrt, which is slower here than zlib's, and the
baseline should be boto3 at its fastest.
"""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] not in ("upload", "download"):
        print(__doc__, file=sys.stderr)
        return 2
    verb, bucket, key, path = argv
    sys.modules["awscrt"] = None  # type: ignore[assignment]  # import awscrt -> ImportError
    from gateway.store.s3 import build_client

    client = build_client()
    try:
        started = time.perf_counter()
        if verb == "upload":
            client.upload_file(path, bucket, key)
        else:
            client.download_file(bucket, key, path)
        seconds = time.perf_counter() - started
    finally:
        client.close()
    print(json.dumps({"seconds": seconds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
