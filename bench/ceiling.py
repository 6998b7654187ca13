"""The framework ceiling: a bare Starlette app whose PUT only drains and hashes the body.

It runs under the same uvicorn, loop (uvloop) and parser (httptools) as the
gateway, so the gap between the two is what the gateway's own pipeline costs.
Run as ``python -m bench.ceiling --port N``.
"""

from __future__ import annotations

import argparse
import hashlib

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def drain(request: Request) -> Response:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.stream():
        digest.update(chunk)
        size += len(chunk)
    return JSONResponse({"size": size, "sha256": digest.hexdigest()}, status_code=201)


async def options(request: Request) -> Response:
    return Response(status_code=204)


app = Starlette(
    routes=[
        Route("/{path:path}", drain, methods=["PUT", "POST"]),
        Route("/{path:path}", options, methods=["OPTIONS"]),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
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
