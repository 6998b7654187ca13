"""Running the app under uvicorn, with graceful shutdown.

uvicorn's httptools parser and uvloop are installed with the package (the
``standard`` extra) and chosen explicitly: they are the fastest pair for
large request bodies.

On SIGTERM the process stops listening, marks itself draining (``/readyz``
turns red, new uploads on open connections get 503 with Retry-After so the
client moves to another replica), lets running requests finish within the
grace period and then closes the rest; an upload cut off that way keeps
every byte it stored and resumes on any replica.
"""

from __future__ import annotations

import logging
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.logs import configure_logging, uvicorn_log_config
from gateway.settings import Settings

log = logging.getLogger("gateway.server")


class GatewayServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self.app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        services = getattr(self.app.state, "services", None)
        if services is not None and not services.draining:
            services.draining = True
            log.info("shutting down: draining running uploads (signal %s)", sig)
        super().handle_exit(sig, frame)


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
    )
    GatewayServer(config, app).run()
