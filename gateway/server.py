"""Running the app under uvicorn, with graceful shutdown.

uvicorn's httptools parser and uvloop are installed with the package (the
``standard`` extra) and chosen explicitly: they are the fastest pair for
large request bodies.
"""

from __future__ import annotations

import uvicorn

from gateway.app import create_app
from gateway.logs import configure_logging, uvicorn_log_config
from gateway.settings import Settings


def run(settings: Settings, *, host: str, port: int, grace: float = 110.0) -> None:
    configure_logging(settings)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        proxy_headers=True,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=int(grace),
        log_config=uvicorn_log_config(settings),
        access_log=True,
        h11_max_incomplete_event_size=64 * 1024,
    )
    uvicorn.Server(config).run()
