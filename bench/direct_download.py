"""The download baseline: boto3 ``download_file`` straight from the bucket, in its own process.

``python -m bench.direct_download BUCKET KEY DEST`` prints ``{"seconds": ...}``.
The client is configured as the gateway's own, the transfer is boto3's
default (8 MiB ranged parts, 10 threads), and awscrt is hidden as in
:mod:`bench.direct_upload`, so the baseline is plain boto3 at its fastest.
"""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    bucket, key, path = argv
    sys.modules["awscrt"] = None  # type: ignore[assignment]  # import awscrt -> ImportError
    from gateway.store.s3 import build_client

    client = build_client()
    try:
        started = time.perf_counter()
        client.download_file(bucket, key, path)
        seconds = time.perf_counter() - started
    finally:
        client.close()
    print(json.dumps({"seconds": seconds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
